"""Information density: uncertainty weighted by how representative a row is (Settles & Craven).

Settles & Craven weight a row's uncertainty by its mean similarity to the pool. Here the pool is
represented by a uniform reference sample and the similarity by the mean cosine similarity to
the ``k_neighbors`` nearest reference rows (exact faiss inner-product search on unit vectors),
and only the ``shortlist`` most uncertain rows are weighted: density never makes a row with
little uncertainty win, and the cost stays ``O(shortlist * reference * d)`` at any pool size.
"""

from dataclasses import dataclass
from typing import ClassVar, Literal

import faiss
import numpy as np
import numpy.typing as npt

from app.strategies.base import TASKS, PoolView, Selection, check_n, require_array
from app.strategies.dedupe import DEFAULT_MAX_SIMILARITY, select_distinct
from app.strategies.uncertainty import (
    entropy_scores,
    least_confidence_scores,
    margin_scores,
    multilabel_uncertainty_scores,
)

Measure = Literal["least_confidence", "margin", "entropy"]
_MEASURES = {
    "least_confidence": least_confidence_scores,
    "margin": margin_scores,
    "entropy": entropy_scores,
}


def _unit(x: npt.ArrayLike) -> npt.NDArray[np.float32]:
    """C-contiguous float32 copy with unit-norm rows (zero rows stay zero)."""
    array = np.array(x, dtype=np.float32, order="C")
    if array.ndim != 2:
        raise ValueError(f"expected a 2-D [m, d] array, got shape {array.shape}")
    norms = np.linalg.norm(array, axis=1, keepdims=True)
    np.divide(array, norms, out=array, where=norms > 0)
    return array


def knn_density(
    queries: npt.ArrayLike, reference: npt.ArrayLike, k_neighbors: int
) -> npt.NDArray[np.float64]:
    """Mean cosine similarity of each query row to its ``k`` most similar reference rows.

    Args:
        queries: float ``[q, d]``.
        reference: float ``[r, d]`` (``r >= 1``); ``k`` is capped at ``r``.
        k_neighbors: ``>= 1``.

    Returns:
        float64 ``[q]`` in ``[-1, 1]``.

    Raises:
        ValueError: on bad shapes, an empty reference or ``k_neighbors < 1``.

    Source:
        B. Settles and M. Craven, "An Analysis of Active Learning Strategies for Sequence
        Labeling Tasks", EMNLP 2008 (information density, Eq. 4), with a kNN estimate.
    """
    q, r = _unit(queries), _unit(reference)
    if r.shape[0] == 0:
        raise ValueError("reference must hold at least one row")
    if q.shape[1] != r.shape[1]:
        raise ValueError(f"widths differ: queries {q.shape[1]}, reference {r.shape[1]}")
    if k_neighbors < 1:
        raise ValueError(f"k_neighbors must be >= 1, got {k_neighbors}")
    k = min(k_neighbors, r.shape[0])
    index = faiss.IndexFlatIP(r.shape[1])
    index.add(r)
    similarities, _ = index.search(q, k)  # [q, k]
    result: npt.NDArray[np.float64] = similarities.astype(np.float64).mean(axis=1)
    return result


def information_density_scores(
    uncertainty: npt.ArrayLike, density: npt.ArrayLike, beta: float
) -> npt.NDArray[np.float64]:
    """``uncertainty * max(density, 0) ** beta`` (Settles & Craven 2008, Eq. 4).

    Args:
        uncertainty: float ``[m]``, ``>= 0``.
        density: float ``[m]`` mean similarity (negative values count as 0).
        beta: weight of the density term (``>= 0``; ``0`` is plain uncertainty).

    Returns:
        float64 ``[m]``.

    Raises:
        ValueError: on mismatched shapes or negative ``beta``.
    """
    u = np.asarray(uncertainty, dtype=np.float64)
    d = np.asarray(density, dtype=np.float64)
    if u.shape != d.shape:
        raise ValueError(f"shapes differ: uncertainty {u.shape}, density {d.shape}")
    if beta < 0:
        raise ValueError(f"beta must be >= 0, got {beta}")
    result: npt.NDArray[np.float64] = u * np.maximum(d, 0.0) ** beta
    return result


@dataclass(frozen=True, slots=True)
class InformationDensity:
    """Uncertainty times kNN density, among the most uncertain rows.

    1. score the selectable rows by ``measure`` (multilabel: mean per-label margin);
    2. keep the ``max(shortlist, n)`` best;
    3. estimate each one's density as the mean cosine similarity to its ``k_neighbors``
       nearest rows of a uniform reference sample of ``reference_size`` pool rows (labeled
       or not: density describes the input distribution);
    4. rank by ``uncertainty * density ** beta`` and drop near-duplicates.

    Attributes:
        measure: ``"least_confidence"``, ``"margin"`` or ``"entropy"``.
        beta: exponent of the density term (``0..10``).
        k_neighbors: neighbours for the density estimate (``1..1000``).
        shortlist: uncertain rows weighted per query (``1..100000``).
        reference_size: reference sample size (``1..1000000``).
        max_similarity: cosine threshold of the near-duplicate filter (``1`` turns it off).

    Source:
        Settles & Craven, EMNLP 2008.
    """

    measure: Measure = "entropy"
    beta: float = 1.0
    k_neighbors: int = 10
    shortlist: int = 2_000
    reference_size: int = 20_000
    max_similarity: float = DEFAULT_MAX_SIMILARITY

    requires: ClassVar[frozenset[str]] = frozenset({"probs", "embeddings"})
    tasks: ClassVar[frozenset[str]] = frozenset(TASKS)

    def __post_init__(self) -> None:
        if self.measure not in _MEASURES:
            raise ValueError(f"measure must be one of {sorted(_MEASURES)}, got {self.measure!r}")
        if not 0.0 <= float(self.beta) <= 10.0:
            raise ValueError(f"beta must be in [0, 10], got {self.beta}")
        for name, value, high in (
            ("k_neighbors", self.k_neighbors, 1000),
            ("shortlist", self.shortlist, 100_000),
            ("reference_size", self.reference_size, 1_000_000),
        ):
            if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= high:
                raise ValueError(f"{name} must be an integer in [1, {high}], got {value!r}")
        if not -1.0 < float(self.max_similarity) <= 1.0:
            raise ValueError(f"max_similarity must be in (-1, 1], got {self.max_similarity}")

    def select(self, view: PoolView, n: int, rng: np.random.Generator) -> Selection:
        """Return the ``n`` best positions by information density, best first.

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
            uncertainty = multilabel_uncertainty_scores(candidate_probs)
        else:
            uncertainty = _MEASURES[self.measure](candidate_probs)
        size = min(int(candidates.shape[0]), max(self.shortlist, n))
        part = np.argpartition(-uncertainty, size - 1)[:size] if size < uncertainty.size else (
            np.arange(uncertainty.size)
        )
        short = np.sort(part)  # positions ascending: deterministic gathers
        n_items = view.n_items
        if n_items > self.reference_size:
            reference = np.sort(rng.choice(n_items, size=self.reference_size, replace=False))
        else:
            reference = np.arange(n_items)
        density = knn_density(
            embeddings[candidates[short]], embeddings[reference], self.k_neighbors
        )
        scores = information_density_scores(uncertainty[short], density, float(self.beta))
        selection = select_distinct(
            candidates[short], scores, n, rng,
            embeddings=embeddings, max_similarity=self.max_similarity,
        )
        selection.info.update(
            n_candidates=int(candidates.shape[0]), n_shortlist=size,
            n_reference=int(reference.size),
        )
        return selection
