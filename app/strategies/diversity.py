"""Diversity-aware batches: core-set k-center greedy, BADGE and diverse mini-batch margin.

All three are vectorized: one matrix-vector product over the candidates per picked row
(k-center, BADGE) or one faiss k-means over a short list (diverse margin). Pools larger than
``max_candidates`` (default 20,000) are first subsampled uniformly (seeded), which is what
bounds a query over 1,000,000 items; the cap is reported in ``Selection.info``.

The random candidate subset is the standard trick of deep active learning at scale (Yoo &
Kweon, "Learning Loss for Active Learning", CVPR 2019, and Beluch et al., "The power of
ensembles for active learning", CVPR 2018, score a random 10,000-item subset per cycle): a
batch of 100 drawn from 20,000 uniform candidates covers the pool's modes as well as one drawn
from all of them, while each pick's cost (one ``[20,000, d]`` GEMV, 30 MiB at d = 384, which
stays in cache) no longer grows with the pool. Distances to the labeled rows are still measured
against *every* labeled row. Measured by ``bench/query_latency.py`` (2 cores, batch 100, 384-d):
k-center over 100,000 candidates costs 1.7 s of picks alone, over 20,000 0.25 s.
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
from app.strategies.uncertainty import margin_scores, multilabel_uncertainty_scores

MAX_CANDIDATES_LIMIT = 2_000_000
DEFAULT_MAX_CANDIDATES = 20_000  # see the module docstring
_INIT_CHUNK = 65_536  # candidate rows per faiss search when measuring distance to labeled rows


def _check_int(name: str, value: object, low: int, high: int) -> None:
    """Raise ValueError unless ``value`` is an int (not bool) in ``[low, high]``."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"{name} must be an integer, got {value!r}")
    if not low <= value <= high:
        raise ValueError(f"{name} must be in [{low}, {high}], got {value}")


def _matrix(x: npt.ArrayLike) -> FloatArray:
    """A C-contiguous float32 2-D copy-or-view of ``x``, or ValueError."""
    array = np.ascontiguousarray(x, dtype=np.float32)
    if array.ndim != 2:
        raise ValueError(f"expected a 2-D [m, d] array, got shape {array.shape}")
    return array


def _subsample(
    candidates: IntArray, cap: int, rng: np.random.Generator
) -> tuple[IntArray, dict[str, object]]:
    """At most ``cap`` candidates (uniform, sorted), and the facts to report."""
    info: dict[str, object] = {"n_candidates": int(candidates.shape[0]), "max_candidates": cap}
    if candidates.shape[0] > cap:
        candidates = np.sort(rng.choice(candidates, size=cap, replace=False))
    info["n_considered"] = int(candidates.shape[0])
    return candidates, info


def min_sq_distances(x: FloatArray, centres: FloatArray) -> npt.NDArray[np.float32]:
    """Squared L2 distance from each row of ``x`` to its nearest row of ``centres`` (faiss).

    Args:
        x: float32 ``[m, d]`` points.
        centres: float32 ``[l, d]`` centres; with ``l == 0`` every distance is ``inf``.

    Returns:
        float32 ``[m]``.

    Raises:
        ValueError: on non-2-D input or mismatched widths.
    """
    x, centres = _matrix(x), _matrix(centres)
    if centres.shape[0] and centres.shape[1] != x.shape[1]:
        raise ValueError(f"widths differ: x has {x.shape[1]}, centres {centres.shape[1]}")
    if centres.shape[0] == 0:
        return np.full(x.shape[0], np.inf, dtype=np.float32)
    index = faiss.IndexFlatL2(x.shape[1])
    index.add(centres)
    out = np.empty(x.shape[0], dtype=np.float32)
    for start in range(0, x.shape[0], _INIT_CHUNK):
        squared, _ = index.search(x[start : start + _INIT_CHUNK], 1)
        out[start : start + _INIT_CHUNK] = np.maximum(squared[:, 0], 0.0)
    return out


def k_center_greedy(
    x: FloatArray, n: int, initial_sq: npt.NDArray[np.float32] | None = None
) -> tuple[IntArray, npt.NDArray[np.float64]]:
    """Greedy k-center: ``n`` times take the row farthest from every centre so far.

    Args:
        x: float32 ``[m, d]`` candidate points, ``n <= m``.
        n: rows to pick.
        initial_sq: float32 ``[m]`` squared distance of each row to the existing centres (the
            labeled rows). ``None`` (no labeled rows) measures from the candidates' mean
            instead, so the first pick is the most atypical row.

    Returns:
        (rows ``[n]`` int64 local indices in pick order, distances ``[n]`` float64: each pick's
        distance to the nearest earlier centre, non-increasing).

    Raises:
        ValueError: if ``n`` is not in ``[1, m]`` or shapes disagree.

    Source:
        O. Sener and S. Savarese, "Active Learning for Convolutional Neural Networks: A Core-Set
        Approach", ICLR 2018 (Algorithm 1, k-Center-Greedy).
    """
    x = _matrix(x)
    m = x.shape[0]
    if not 1 <= n <= m:
        raise ValueError(f"n must be in [1, {m}], got {n}")
    sq_norms = np.einsum("ij,ij->i", x, x)  # [m]
    if initial_sq is None:
        mean = x.mean(axis=0)
        min_sq = np.maximum(sq_norms - 2.0 * (x @ mean) + mean @ mean, 0.0).astype(np.float32)
    else:
        min_sq = np.array(initial_sq, dtype=np.float32)
        if min_sq.shape != (m,):
            raise ValueError(f"initial_sq must have shape ({m},), got {min_sq.shape}")
    rows = np.empty(n, dtype=np.int64)
    distances = np.empty(n, dtype=np.float64)
    for step in range(n):  # one GEMV over the candidates per pick
        j = int(np.argmax(min_sq))
        rows[step], distances[step] = j, float(np.sqrt(max(min_sq[j], 0.0)))
        centre = x[j]
        sq = sq_norms - 2.0 * (x @ centre) + sq_norms[j]
        np.minimum(min_sq, np.maximum(sq, 0.0), out=min_sq)
        min_sq[j] = -1.0  # never again
    return rows, distances


@dataclass(frozen=True, slots=True)
class KCenterGreedy:
    """Core-set selection: greedy k-center over the embeddings, labeled rows as initial centres.

    Model-free given embeddings (the checkpoint's, else the pool's features). Every labeled row
    (blocked or not) is a centre; selectable rows are candidates, subsampled to
    ``max_candidates`` first. Scores are each pick's distance to its nearest centre.

    Attributes:
        max_candidates: cap on candidates per query (``1..2,000,000``, default 20,000); each
            pick costs one ``[max_candidates, d]`` matrix-vector product.

    Source:
        Sener & Savarese, "Active Learning for Convolutional Neural Networks: A Core-Set
        Approach", ICLR 2018.
    """

    max_candidates: int = DEFAULT_MAX_CANDIDATES

    requires: ClassVar[frozenset[str]] = frozenset({"embeddings"})
    tasks: ClassVar[frozenset[str]] = frozenset(TASKS)

    def __post_init__(self) -> None:
        _check_int("max_candidates", self.max_candidates, 1, MAX_CANDIDATES_LIMIT)

    def select(self, view: PoolView, n: int, rng: np.random.Generator) -> Selection:
        """Return ``n`` positions covering the embedding space, farthest first.

        Raises:
            ValueError: if ``n < 1``.
            PoolExhausted: if fewer than ``n`` positions are selectable.
            ModelNotReady: if the view carries no ``embeddings``.
        """
        candidates = check_n(view, n)
        embeddings = require_array(view, "embeddings")
        candidates, info = _subsample(candidates, max(self.max_candidates, n), rng)
        x = _matrix(embeddings[candidates])  # [m, d] copy
        labeled = np.flatnonzero(view.labeled)
        initial = None
        if labeled.size:
            initial = min_sq_distances(x, _matrix(embeddings[labeled]))
        rows, distances = k_center_greedy(x, n, initial)
        selection = Selection(positions=candidates[rows].astype(np.int64), scores=distances)
        selection.info.update(info, n_centres=int(labeled.size))
        return selection


def gradient_residuals(probs: npt.NDArray[np.floating], *, multilabel: bool) -> FloatArray:
    """``p - onehot(argmax p)`` (multilabel: ``p - [p >= 0.5]``): BADGE's last-layer gradient
    factor, so that the gradient embedding of a row is ``residual ⊗ hidden``.

    Args:
        probs: float ``[m, c]`` probabilities.
        multilabel: independent sigmoids instead of a softmax.

    Returns:
        float32 ``[m, c]``.

    Raises:
        ValueError: if ``probs`` is not 2-D.
    """
    p = _matrix(probs).copy()
    if multilabel:
        p -= (p >= 0.5).astype(np.float32)
    else:
        p[np.arange(p.shape[0]), p.argmax(axis=1)] -= 1.0
    return p


def badge_kmeans_pp(
    residuals: FloatArray, hidden: FloatArray, n: int, rng: np.random.Generator
) -> tuple[IntArray, npt.NDArray[np.float64]]:
    """k-means++ seeding over gradient embeddings ``g_i = r_i ⊗ h_i``, never materialized.

    Uses ``|g_i - g_j|^2 = |r_i|^2 |h_i|^2 + |r_j|^2 |h_j|^2 - 2 (r_i . r_j)(h_i . h_j)``, so
    each pick costs two matrix-vector products (``[m, c]`` and ``[m, d]``) instead of one over
    ``[m, c*d]``. The first centre is the row of largest gradient norm (as in BADGE); each next
    one is drawn with probability proportional to its squared distance to the nearest centre.

    Args:
        residuals: float32 ``[m, c]`` (:func:`gradient_residuals`).
        hidden: float32 ``[m, d]`` penultimate-layer embeddings.
        n: rows to pick (``1 <= n <= m``).
        rng: seeded generator for the D^2 draws.

    Returns:
        (rows int64 ``[n]`` in pick order, float64 ``[n]`` squared distance of each pick to the
        nearest earlier centre at the time it was picked; the first gets its squared norm).

    Raises:
        ValueError: on mismatched shapes or ``n`` outside ``[1, m]``.

    Source:
        J. T. Ash, C. Zhang, A. Krishnamurthy, J. Langford and A. Agarwal, "Deep Batch Active
        Learning by Diverse, Uncertain Gradient Lower Bounds", ICLR 2020 (BADGE).
    """
    r, h = _matrix(residuals), _matrix(hidden)
    m = r.shape[0]
    if h.shape[0] != m:
        raise ValueError(f"residuals has {m} rows, hidden {h.shape[0]}")
    if not 1 <= n <= m:
        raise ValueError(f"n must be in [1, {m}], got {n}")
    sq_norms = (np.einsum("ij,ij->i", r, r) * np.einsum("ij,ij->i", h, h)).astype(np.float64)
    rows = np.empty(n, dtype=np.int64)
    picked_sq = np.empty(n, dtype=np.float64)
    min_sq = np.full(m, np.inf)
    taken = np.zeros(m, dtype=bool)
    j = int(np.argmax(sq_norms))
    picked_sq[0] = sq_norms[j]
    for step in range(n):
        if step:
            weights = np.where(taken, 0.0, min_sq)
            total = weights.sum()
            if total > 0 and np.isfinite(total):
                j = int(rng.choice(m, p=weights / total))
            else:  # every remaining row coincides with a centre: any of them will do
                j = int(rng.choice(np.flatnonzero(~taken)))
            picked_sq[step] = float(weights[j])
        rows[step] = j
        taken[j] = True
        sq = sq_norms + sq_norms[j] - 2.0 * (r @ r[j]).astype(np.float64) * (h @ h[j])
        np.minimum(min_sq, np.maximum(sq, 0.0), out=min_sq)
    return rows, picked_sq


@dataclass(frozen=True, slots=True)
class BADGE:
    """BADGE: k-means++ seeding over last-layer gradient embeddings (uncertain *and* diverse).

    Gradient embeddings combine the checkpoint's ``probs`` (hypothesised-label residual) and its
    hidden-layer ``embeddings``; rows with large gradients are uncertain, and D^2 sampling
    spreads the batch. Candidates are subsampled to ``max_candidates`` first. The batch is
    returned sorted by the squared distance each row had when picked.

    Attributes:
        max_candidates: cap on candidates per query (``1..2,000,000``, default 20,000).

    Source:
        Ash et al., "Deep Batch Active Learning by Diverse, Uncertain Gradient Lower Bounds",
        ICLR 2020.
    """

    max_candidates: int = DEFAULT_MAX_CANDIDATES

    requires: ClassVar[frozenset[str]] = frozenset({"probs", "embeddings"})
    tasks: ClassVar[frozenset[str]] = frozenset(TASKS)

    def __post_init__(self) -> None:
        _check_int("max_candidates", self.max_candidates, 1, MAX_CANDIDATES_LIMIT)

    def select(self, view: PoolView, n: int, rng: np.random.Generator) -> Selection:
        """Return ``n`` positions by k-means++ over gradient embeddings, best first.

        Raises:
            ValueError: if ``n < 1``.
            PoolExhausted: if fewer than ``n`` positions are selectable.
            ModelNotReady: if the view lacks ``probs`` or ``embeddings``.
        """
        candidates = check_n(view, n)
        probs = require_array(view, "probs")
        embeddings = require_array(view, "embeddings")
        candidates, info = _subsample(candidates, max(self.max_candidates, n), rng)
        residuals = gradient_residuals(probs[candidates], multilabel=view.task == "multilabel")
        rows, picked_sq = badge_kmeans_pp(residuals, _matrix(embeddings[candidates]), n, rng)
        selection = top_k(candidates[rows].astype(np.int64), picked_sq, n, rng)
        selection.info.update(info)
        return selection


@dataclass(frozen=True, slots=True)
class DiverseMargin:
    """Diverse mini-batch margin: cluster the ``beta * n`` smallest-margin rows, one per cluster.

    1. score every selectable row by margin (multilabel: mean per-label margin);
    2. keep the ``beta * n`` best (at least ``n``);
    3. cut their embeddings into ``n`` clusters with faiss k-means, weighted by the score;
    4. from each cluster take the member nearest its centroid; empty clusters are filled with
       the best-scoring rows not yet taken.

    The batch is sorted by margin score. Cost: one pass over the probabilities plus k-means on
    ``beta * n`` points, so it is as fast at 1,000,000 rows as margin sampling.

    Attributes:
        beta: shortlist size as a multiple of ``n`` (``1..100``; Zhdanov uses 10).
        max_iter: k-means iterations (``1..1000``).

    Source:
        F. Zhdanov, "Diverse mini-batch Active Learning", arXiv:1901.05954, 2019; the same
        margin-then-cluster idea as cluster-margin (Citovsky et al., NeurIPS 2021).
    """

    beta: int = 10
    max_iter: int = 20

    requires: ClassVar[frozenset[str]] = frozenset({"probs", "embeddings"})
    tasks: ClassVar[frozenset[str]] = frozenset(TASKS)

    def __post_init__(self) -> None:
        _check_int("beta", self.beta, 1, 100)
        _check_int("max_iter", self.max_iter, 1, 1000)

    def select(self, view: PoolView, n: int, rng: np.random.Generator) -> Selection:
        """Return ``n`` uncertain, mutually diverse positions, best first.

        Raises:
            ValueError: if ``n < 1``.
            PoolExhausted: if fewer than ``n`` positions are selectable.
            ModelNotReady: if the view lacks ``probs`` or ``embeddings``.
        """
        candidates = check_n(view, n)
        probs = require_array(view, "probs")
        embeddings = require_array(view, "embeddings")
        candidate_probs = np.asarray(probs[candidates], dtype=np.float32)
        if view.task == "multilabel":
            scores = multilabel_uncertainty_scores(candidate_probs)
        else:
            scores = margin_scores(candidate_probs)
        size = min(int(candidates.shape[0]), self.beta * n)
        shortlist = top_k(candidates, scores, size, rng)
        info: dict[str, object] = {"n_candidates": int(candidates.shape[0]), "n_shortlist": size}
        if size == n:
            shortlist.info.update(info, n_filled=0)
            return shortlist
        x = _matrix(embeddings[shortlist.positions])
        params: dict[str, object] = {
            "niter": self.max_iter,
            "seed": int(rng.integers(0, 2**31 - 1)),
            "min_points_per_centroid": 1,
            "max_points_per_centroid": max(256, size),  # never subsample the short list
            "verbose": False,
        }
        kmeans_pp = getattr(faiss, "ClusteringInitMethod_KMEANS_PLUS_PLUS", None)
        if kmeans_pp is not None:  # faiss >= 1.12
            params["init_method"] = kmeans_pp
        kmeans = faiss.Kmeans(x.shape[1], n, **params)
        kmeans.train(x, weights=np.maximum(shortlist.scores, 1e-6).astype(np.float32))
        sq, cluster = kmeans.index.search(x, 1)  # nearest centroid of each shortlisted row
        cluster, sq = cluster[:, 0], sq[:, 0]
        by_cluster = np.lexsort((sq, cluster))  # within a cluster, nearest to centroid first
        heads = by_cluster[np.r_[True, np.diff(cluster[by_cluster]) != 0]]  # [<= n]
        n_filled = n - heads.size
        if n_filled > 0:
            rest = np.setdiff1d(np.arange(size), heads)[:n_filled]  # shortlist is best first
            heads = np.concatenate([heads, rest])
        selection = top_k(shortlist.positions[heads], shortlist.scores[heads], n, rng)
        selection.info.update(info, n_filled=int(n_filled))
        return selection
