"""Bayesian active learning by disagreement (BALD) from MC-dropout samples.

The training job stores ``mc_probs.npy`` (float16/float32 ``[t, n, c]``: ``t`` stochastic
forward passes with dropout on, Gal & Ghahramani 2016) next to ``probs.npy``; BALD scores each
row by the mutual information between its label and the network weights.
"""

from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import numpy.typing as npt

from app.strategies.base import TASKS, PoolView, Selection, check_n, require_array
from app.strategies.dedupe import DEFAULT_MAX_SIMILARITY, select_distinct

_CHUNK_ELEMENTS = 8_000_000  # float64 elements per scoring chunk (~64 MB), bounds memory


def _entropy(p: npt.NDArray[np.float64], axis: int) -> npt.NDArray[np.float64]:
    """Shannon entropy (natural log) along ``axis`` with ``0 log 0 = 0``."""
    log_p = np.log(p, out=np.zeros_like(p), where=p > 0)
    result: npt.NDArray[np.float64] = -(p * log_p).sum(axis=axis)
    return result


def _binary_entropy(p: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    """Entropy of independent Bernoulli variables, elementwise."""
    return _entropy(np.stack([p, 1.0 - p]), axis=0)


def bald_scores(mc_probs: npt.NDArray[np.floating], *, multilabel: bool = False) -> npt.NDArray[
    np.float64
]:
    """BALD mutual information ``H[mean_t p_t] - mean_t H[p_t]`` per row.

    Args:
        mc_probs: float16/float32 ``[t, m, c]`` MC-dropout probabilities (softmax rows, or
            independent sigmoids when ``multilabel``).
        multilabel: score each column as a Bernoulli variable and sum over labels (labels
            treated as independent).

    Returns:
        float64 ``[m]``, ``>= 0`` up to rounding; higher means the dropout samples disagree
        more (epistemic uncertainty). Zero when all samples agree.

    Raises:
        ValueError: if ``mc_probs`` is not 3-D.

    Source:
        N. Houlsby, F. Huszar, Z. Ghahramani and M. Lengyel, "Bayesian Active Learning for
        Classification and Preference Learning", arXiv:1112.5745, 2011; with MC dropout:
        Y. Gal, R. Islam and Z. Ghahramani, "Deep Bayesian Active Learning with Image Data",
        ICML 2017.
    """
    samples = np.asarray(mc_probs)
    if samples.ndim != 3:
        raise ValueError(f"mc_probs must be 3-D [t, m, c], got shape {samples.shape}")
    t, m, c = samples.shape
    scores = np.empty(m, dtype=np.float64)
    rows = max(1, _CHUNK_ELEMENTS // max(1, t * c))
    for start in range(0, m, rows):  # chunks of rows: memory stays bounded at any pool size
        p = samples[:, start : start + rows].astype(np.float64)  # [t, r, c]
        mean = p.mean(axis=0)  # [r, c]
        if multilabel:
            total = _binary_entropy(mean).sum(axis=-1)
            expected = _binary_entropy(p).sum(axis=-1).mean(axis=0)
        else:
            total = _entropy(mean, axis=-1)
            expected = _entropy(p, axis=-1).mean(axis=0)
        scores[start : start + rows] = np.maximum(total - expected, 0.0)
    return scores


@dataclass(frozen=True, slots=True)
class BALD:
    """Pick the rows whose MC-dropout samples disagree most (mutual information).

    Scores only the selectable rows (a gather of ``mc_probs[:, candidates]`` in chunks), then
    takes the best ``n`` without near-duplicates (:func:`~app.strategies.dedupe.select_distinct`
    on the view's embeddings, when it has them).

    Attributes:
        max_similarity: cosine threshold of the near-duplicate filter (``1`` turns it off).

    Source:
        Houlsby et al. 2011 (BALD); Gal, Islam & Ghahramani, ICML 2017 (MC dropout).
    """

    max_similarity: float = DEFAULT_MAX_SIMILARITY

    requires: ClassVar[frozenset[str]] = frozenset({"mc_probs"})
    tasks: ClassVar[frozenset[str]] = frozenset(TASKS)

    def __post_init__(self) -> None:
        if not -1.0 < float(self.max_similarity) <= 1.0:
            raise ValueError(f"max_similarity must be in (-1, 1], got {self.max_similarity}")

    def select(self, view: PoolView, n: int, rng: np.random.Generator) -> Selection:
        """Return the ``n`` selectable positions with the highest BALD score, best first.

        Raises:
            ValueError: if ``n < 1`` or ``mc_probs`` does not match the pool.
            PoolExhausted: if fewer than ``n`` positions are selectable.
            ModelNotReady: if the view carries no ``mc_probs``.
        """
        candidates = check_n(view, n)
        mc_probs = require_array(view, "mc_probs")
        if mc_probs.ndim != 3 or mc_probs.shape[1] != view.n_items:
            raise ValueError(
                f"mc_probs must be [t, {view.n_items}, c], got shape {mc_probs.shape}"
            )
        multilabel = view.task == "multilabel"
        step = max(1, _CHUNK_ELEMENTS // max(1, mc_probs.shape[0] * mc_probs.shape[2]))
        scores = np.concatenate(  # gather in chunks: no [t, m, c] copy of a million rows
            [
                bald_scores(mc_probs[:, candidates[i : i + step]], multilabel=multilabel)
                for i in range(0, candidates.shape[0], step)
            ]
        )
        selection = select_distinct(
            candidates, scores, n, rng,
            embeddings=view.embeddings, max_similarity=self.max_similarity,
        )
        selection.info.update(n_candidates=int(candidates.shape[0]), mc_samples=mc_probs.shape[0])
        return selection
