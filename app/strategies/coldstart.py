"""Model-free cold-start selection: typical points of k-means clusters (TypiClust).

With a tiny labeling budget and no trained checkpoint, uncertainty is meaningless; Hacohen,
Dekel & Weinshall (2022) show that picking *typical* points (dense regions) of distinct
clusters works better. Everything here works on embeddings only.
"""

from dataclasses import dataclass
from typing import ClassVar

import faiss
import numpy as np
import numpy.typing as npt

from app.strategies.base import (
    TASKS,
    FloatArray,
    IntArray,
    PoolView,
    Selection,
    check_n,
    require_array,
    top_k,
)

TYPICALITY_EPS = 1e-5  # TypiClust's 1 / (mean distance + 1e-5)
MAX_POINTS_LIMIT = 100_000  # bounds request-time work: typicality costs O(max_points**2 * d / n)


def _as_float32_matrix(embeddings: npt.ArrayLike) -> FloatArray:
    """Return ``embeddings`` as a C-contiguous float32 ``[m, d]`` matrix, or raise ValueError."""
    array = np.ascontiguousarray(embeddings, dtype=np.float32)
    if array.ndim != 2:
        raise ValueError(f"embeddings must be 2-D [m, d], got shape {array.shape}")
    return array


def typicality_scores(embeddings: FloatArray, k_neighbors: int) -> npt.NDArray[np.float64]:
    """Typicality of each point: ``1 / (mean L2 distance to its k nearest others + 1e-5)``.

    Exact k-nearest neighbours by brute force (``faiss.IndexFlatL2``), excluding the point
    itself; ``k`` is capped at ``m - 1``. A lone point (``m == 1``) has typicality ``0``.

    Args:
        embeddings: float32 ``[m, d]`` points.
        k_neighbors: number of neighbours to average over (``>= 1``).

    Returns:
        float64 ``[m]``; higher means the point sits in a denser region.

    Raises:
        ValueError: if ``embeddings`` is not 2-D or ``k_neighbors < 1``.

    Source:
        G. Hacohen, A. Dekel and D. Weinshall, "Active Learning on a Budget: Opposite
        Strategies Suit High and Low Budgets", ICML 2022 (TypiClust), Eq. 1.
    """
    if k_neighbors < 1:
        raise ValueError(f"k_neighbors must be >= 1, got {k_neighbors}")
    x = _as_float32_matrix(embeddings)
    m = x.shape[0]
    if m <= 1:
        return np.zeros(m, dtype=np.float64)
    k = min(k_neighbors, m - 1)
    index = faiss.IndexFlatL2(x.shape[1])
    index.add(x)
    squared, _ = index.search(x, k + 1)  # [m, k + 1] ascending; column 0 is the point itself
    distances = np.sqrt(np.maximum(squared[:, 1:], 0.0, dtype=np.float64))  # [m, k]
    scores: npt.NDArray[np.float64] = 1.0 / (distances.mean(axis=1) + TYPICALITY_EPS)
    return scores


def cluster_typicality(
    embeddings: FloatArray, cluster_ids: IntArray, k_neighbors: int
) -> npt.NDArray[np.float64]:
    """Typicality of each point measured inside its own cluster (see :func:`typicality_scores`).

    Args:
        embeddings: float32 ``[m, d]`` points.
        cluster_ids: int64 ``[m]`` cluster of each point (any non-negative ids).
        k_neighbors: neighbours per point (capped at the cluster size minus one).

    Returns:
        float64 ``[m]``; points alone in their cluster get ``0``.

    Raises:
        ValueError: if the shapes disagree, an id is negative or ``k_neighbors < 1``.
    """
    x = _as_float32_matrix(embeddings)
    ids = np.asarray(cluster_ids, dtype=np.int64)
    if ids.shape != (x.shape[0],):
        raise ValueError(f"cluster_ids must have shape ({x.shape[0]},), got {ids.shape}")
    if ids.size and ids.min() < 0:
        raise ValueError("cluster_ids must be non-negative")
    if k_neighbors < 1:
        raise ValueError(f"k_neighbors must be >= 1, got {k_neighbors}")
    scores = np.zeros(x.shape[0], dtype=np.float64)
    order = np.argsort(ids, kind="stable")  # members of each cluster become contiguous
    starts = np.flatnonzero(np.r_[True, np.diff(ids[order]) != 0])
    for members in np.split(order, starts[1:]):  # one iteration per non-empty cluster
        scores[members] = typicality_scores(x[members], k_neighbors)
    return scores


def kmeans_cluster_ids(
    embeddings: FloatArray, n_clusters: int, *, max_iter: int, seed: int
) -> IntArray:
    """Cluster points with faiss k-means (k-means++ init where faiss has it), return assignments.

    Args:
        embeddings: float32 ``[m, d]`` points, ``m >= n_clusters``.
        n_clusters: number of centroids.
        max_iter: Lloyd iterations.
        seed: faiss seed (initialisation and training subsample); same seed, same result.

    Returns:
        int64 ``[m]`` id in ``[0, n_clusters)`` of each point's nearest centroid. Some ids may
        be unused (e.g. duplicated points).

    Raises:
        ValueError: if ``n_clusters < 1`` or ``m < n_clusters``.
    """
    x = _as_float32_matrix(embeddings)
    if n_clusters < 1 or x.shape[0] < n_clusters:
        raise ValueError(f"cannot cut {x.shape[0]} points into {n_clusters} clusters")
    params: dict[str, object] = {
        "niter": max_iter,
        "seed": seed,
        "min_points_per_centroid": 1,  # small pools are fine; silences faiss' warning
        "verbose": False,
    }
    kmeans_pp = getattr(faiss, "ClusteringInitMethod_KMEANS_PLUS_PLUS", None)
    if kmeans_pp is not None:  # faiss >= 1.12; older versions fall back to random init
        params["init_method"] = kmeans_pp
    kmeans = faiss.Kmeans(x.shape[1], n_clusters, **params)
    kmeans.train(x)
    _, nearest = kmeans.index.search(x, 1)  # [m, 1]
    return nearest[:, 0].astype(np.int64)


def _check_int(name: str, value: object, low: int, high: int) -> None:
    """Raise ValueError unless ``low <= value <= high`` and ``value`` is an int (not bool)."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"{name} must be an integer, got {value!r}")
    if not low <= value <= high:
        raise ValueError(f"{name} must be in [{low}, {high}], got {value}")


@dataclass(frozen=True, slots=True)
class TypicalClusters:
    """TypiClust-style cold start: the most typical point of each of ``n`` k-means clusters.

    ``select`` works on the selectable positions only:

    1. if there are more than ``max(max_points, n)`` of them, a uniform subsample of that size
       (drawn from ``rng``) stands in for the pool;
    2. their embeddings are cut into ``n`` clusters with faiss k-means (seeded from ``rng``);
    3. clusters are taken largest first, and from each the point with the highest typicality
       (inverse mean L2 distance to its ``k_neighbors`` nearest neighbours *inside the
       cluster*; a cluster of one gives its point, with typicality 0);
    4. if fewer than ``n`` clusters are non-empty, the remaining slots go to the most typical
       points not yet chosen.

    The batch is returned best first by typicality, which is also the score. With the same
    seed the result is the same. Labeled points are not used (this is a pool-only, model-free
    method; TypiClust proper also skips clusters that already hold labels).

    Attributes:
        max_points: cap on the candidates clustered per query (``1..100000``); the
            typicality search costs about ``max_points**2 * d / n`` flops.
        k_neighbors: neighbours used for typicality (``1..1000``; TypiClust uses 20).
        max_iter: k-means iterations (``1..1000``).

    Source:
        G. Hacohen, A. Dekel and D. Weinshall, "Active Learning on a Budget: Opposite
        Strategies Suit High and Low Budgets", ICML 2022.
    """

    max_points: int = 20_000
    k_neighbors: int = 20
    max_iter: int = 20

    requires: ClassVar[frozenset[str]] = frozenset({"embeddings"})
    tasks: ClassVar[frozenset[str]] = frozenset(TASKS)

    def __post_init__(self) -> None:
        _check_int("max_points", self.max_points, 1, MAX_POINTS_LIMIT)
        _check_int("k_neighbors", self.k_neighbors, 1, 1000)
        _check_int("max_iter", self.max_iter, 1, 1000)

    def select(self, view: PoolView, n: int, rng: np.random.Generator) -> Selection:
        """Return ``n`` typical, mutually distant selectable positions, best first.

        Returns:
            Selection whose float64 scores are the within-cluster typicalities; ``info`` holds
            ``n_candidates``, ``n_clustered``, ``n_nonempty_clusters`` and ``n_filled``.

        Raises:
            ValueError: if ``n < 1``.
            PoolExhausted: if fewer than ``n`` positions are selectable.
            ModelNotReady: if the view carries no ``embeddings``.
        """
        candidates = check_n(view, n)
        embeddings = require_array(view, "embeddings")
        n_candidates = int(candidates.shape[0])
        cap = max(self.max_points, n)
        pool = candidates
        if n_candidates > cap:
            pool = np.sort(rng.choice(candidates, size=cap, replace=False))
        x = _as_float32_matrix(embeddings[pool])  # [p, d], a copy
        info: dict[str, object] = {"n_candidates": n_candidates, "n_clustered": int(pool.size)}

        if n >= pool.size:  # every point is taken; rank them by typicality in the whole pool
            selection = top_k(pool, typicality_scores(x, self.k_neighbors), n, rng)
            selection.info.update(info, n_nonempty_clusters=int(pool.size), n_filled=0)
            return selection

        seed = int(rng.integers(0, 2**31 - 1))
        cluster_ids = kmeans_cluster_ids(x, n, max_iter=self.max_iter, seed=seed)  # [p]
        typicality = cluster_typicality(x, cluster_ids, self.k_neighbors)  # [p]

        # the most typical member of every non-empty cluster (lexsort: last key is primary)
        by_cluster = np.lexsort((-typicality, cluster_ids))
        heads = by_cluster[np.r_[True, np.diff(cluster_ids[by_cluster]) != 0]]
        sizes = np.bincount(cluster_ids, minlength=n)
        heads = heads[np.argsort(-sizes[cluster_ids[heads]], kind="stable")][:n]  # largest first

        chosen = heads
        n_filled = n - heads.size
        if n_filled > 0:
            rest = np.setdiff1d(np.arange(pool.size), heads)
            fill = top_k(rest.astype(np.int64), typicality[rest], n_filled, rng).positions
            chosen = np.concatenate([heads, fill])

        selection = top_k(pool[chosen], typicality[chosen], n, rng)
        selection.info.update(info, n_nonempty_clusters=int(heads.size), n_filled=int(n_filled))
        return selection
