"""Uncertainty sampling: ask about the rows the current checkpoint is least sure of.

Score functions are pure and vectorized; each strategy scores only the selectable rows and
takes the top ``n`` with :func:`app.strategies.base.top_k`. For ``multilabel`` projects (one
independent sigmoid per column) every strategy here scores with
:func:`multilabel_uncertainty_scores` instead, since top-1/top-2 and the categorical entropy are
meaningless when columns do not sum to one.
"""

from collections.abc import Callable
from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import numpy.typing as npt

from app.strategies.base import (
    TASKS,
    FloatArray,
    PoolView,
    Selection,
    check_n,
    require_array,
)
from app.strategies.dedupe import DEFAULT_MAX_SIMILARITY, select_distinct

ScoreArray = npt.NDArray[np.float64]
ScoreFunction = Callable[[FloatArray], ScoreArray]


def _check_probs(probs: npt.ArrayLike, *, min_classes: int = 1) -> npt.NDArray[np.floating]:
    """Return ``probs`` as a 2-D float array, or raise ValueError."""
    array = np.asarray(probs)
    if array.ndim != 2:
        raise ValueError(f"probs must be 2-D [n_rows, n_classes], got shape {array.shape}")
    if array.shape[1] < min_classes:
        raise ValueError(f"probs needs at least {min_classes} columns, got {array.shape[1]}")
    if not np.issubdtype(array.dtype, np.floating):
        array = array.astype(np.float64)
    return array


def least_confidence_scores(probs: FloatArray) -> ScoreArray:
    """Least-confidence uncertainty: ``1 - max_k p_k`` per row (Lewis & Gale 1994).

    Args:
        probs: float32 ``[m, c]`` class probabilities, rows summing to 1.

    Returns:
        float64 ``[m]``; higher means less confident (``0`` for a one-hot row).

    Raises:
        ValueError: if ``probs`` is not 2-D or has no column.

    Source:
        D. Lewis and W. Gale, "A Sequential Algorithm for Training Text Classifiers", SIGIR 1994.
    """
    array = _check_probs(probs)
    scores: ScoreArray = 1.0 - array.max(axis=1).astype(np.float64)
    return scores


def margin_scores(probs: FloatArray) -> ScoreArray:
    """Margin uncertainty: ``1 - (p_top1 - p_top2)`` per row (Scheffer et al. 2001).

    Running maxima over the columns (up to 64 classes; beyond, ``argmax``, mask, ``max``): O(c)
    per row, no sort, so 1,000,000 x 10 float32 rows score in about 60 ms of CPU.

    Args:
        probs: float32 ``[m, c]`` class probabilities with ``c >= 2``, rows summing to 1.

    Returns:
        float64 ``[m]`` in ``[0, 1]``; higher means the two best classes are closer.

    Raises:
        ValueError: if ``probs`` is not 2-D or has fewer than two columns.

    Source:
        T. Scheffer, C. Decomain and S. Wrobel, "Active Hidden Markov Models for Information
        Extraction", IDA 2001.
    """
    array = _check_probs(probs, min_classes=2)
    if array.shape[1] <= _COLUMN_LOOP_MAX_CLASSES:
        top1, top2 = _top_two_by_columns(array)
    else:
        rows = np.arange(array.shape[0])
        best = array.argmax(axis=1)  # [m]
        top1 = array[rows, best]
        others = np.array(array, copy=True)  # [m, c]
        others[rows, best] = -np.inf
        top2 = others.max(axis=1)
    scores: ScoreArray = 1.0 - (top1.astype(np.float64) - top2.astype(np.float64))
    return scores


_COLUMN_LOOP_MAX_CLASSES = 64


def _top_two_by_columns(array: npt.NDArray[np.floating]) -> tuple[np.ndarray, np.ndarray]:
    """Largest and second largest value per row via running maxima over the columns of a
    transposed copy (contiguous ``[c, m]``): ~2.5x faster than ``np.partition`` per row."""
    columns = np.ascontiguousarray(array.T)  # [c, m]
    top1 = columns[0].copy()
    top2 = np.full_like(top1, -np.inf)
    low = np.empty_like(top1)
    for column in columns[1:]:
        np.minimum(top1, column, out=low)
        np.maximum(top2, low, out=top2)
        np.maximum(top1, column, out=top1)
    return top1, top2


def entropy_scores(probs: FloatArray) -> ScoreArray:
    """Shannon entropy ``-sum_k p_k log p_k`` (natural log) per row, with ``0 log 0 = 0``.

    Args:
        probs: float32 ``[m, c]`` class probabilities, rows summing to 1. Entries ``<= 0``
            contribute nothing.

    Returns:
        float64 ``[m]`` in ``[0, log c]``; higher means more uncertain.

    Raises:
        ValueError: if ``probs`` is not 2-D or has no column.

    Source:
        C. Shannon, "A Mathematical Theory of Communication", 1948; as an acquisition function,
        B. Settles, "Active Learning Literature Survey", UW-Madison TR 1648, 2009.
    """
    array = _check_probs(probs)  # float32 stays float32: half the memory traffic of float64
    positive = array > 0
    log_p = np.log(array, out=np.zeros_like(array), where=positive)
    scores: ScoreArray = -np.einsum("ij,ij->i", array, log_p).astype(np.float64)
    return scores


def multilabel_uncertainty_scores(probs: FloatArray) -> ScoreArray:
    """Multilabel uncertainty: mean over labels of ``1 - |2 p - 1|`` per row.

    Each column is an independent sigmoid; a label is most uncertain at ``p = 0.5`` (score 1)
    and certain at ``p`` in ``{0, 1}`` (score 0). This is the per-label margin averaged over
    labels (mean max-margin uncertainty, cf. Settles 2009 §3 and Brinker 2006, "On Active
    Learning in Multi-label Classification").

    Args:
        probs: float32 ``[m, c]`` per-label probabilities in ``[0, 1]`` (rows need not sum to 1).

    Returns:
        float64 ``[m]`` in ``[0, 1]``; higher means more uncertain.

    Raises:
        ValueError: if ``probs`` is not 2-D or has no column.
    """
    array = _check_probs(probs).astype(np.float64)
    scores: ScoreArray = 1.0 - np.abs(2.0 * array - 1.0).mean(axis=1)
    return scores


def _check_max_similarity(value: float) -> None:
    """Raise ValueError unless ``value`` is a cosine threshold in ``(-1, 1]``."""
    if isinstance(value, bool) or not isinstance(value, int | float) or not -1.0 < value <= 1.0:
        raise ValueError(f"max_similarity must be a number in (-1, 1], got {value!r}")


def _select_uncertain(
    view: PoolView,
    n: int,
    rng: np.random.Generator,
    score_function: ScoreFunction,
    max_similarity: float,
) -> Selection:
    """Score the selectable rows with ``score_function`` (multilabel: the multilabel score),
    take the best ``n`` without near-duplicates (when the view carries embeddings)."""
    candidates = check_n(view, n)
    probs = require_array(view, "probs")
    score = multilabel_uncertainty_scores if view.task == "multilabel" else score_function
    if 2 * candidates.shape[0] > view.n_items:  # most rows: score all, skip the [m, c] gather
        scores = score(np.asarray(probs))[candidates]
    else:
        scores = score(np.asarray(probs[candidates], dtype=np.float32))
    selection = select_distinct(
        candidates, scores, n, rng, embeddings=view.embeddings, max_similarity=max_similarity
    )
    selection.info["n_candidates"] = int(candidates.shape[0])
    return selection


@dataclass(frozen=True, slots=True)
class LeastConfidence:
    """Pick the selectable rows whose most likely class has the lowest probability.

    Scores with :func:`least_confidence_scores` (multilabel: :func:`multilabel_uncertainty_scores`).
    ``max_similarity``: cosine threshold of the near-duplicate filter over the view's
    embeddings (:func:`~app.strategies.dedupe.select_distinct`; ``1`` turns it off).
    Source: Lewis & Gale 1994, "A Sequential Algorithm for Training Text Classifiers".
    """

    max_similarity: float = DEFAULT_MAX_SIMILARITY

    requires: ClassVar[frozenset[str]] = frozenset({"probs"})
    tasks: ClassVar[frozenset[str]] = frozenset(TASKS)

    def __post_init__(self) -> None:
        _check_max_similarity(self.max_similarity)

    def select(self, view: PoolView, n: int, rng: np.random.Generator) -> Selection:
        """Return the ``n`` least confident selectable positions, best first.

        Raises:
            ValueError: if ``n < 1``.
            PoolExhausted: if fewer than ``n`` positions are selectable.
            ModelNotReady: if the view carries no ``probs``.
        """
        return _select_uncertain(view, n, rng, least_confidence_scores, self.max_similarity)


@dataclass(frozen=True, slots=True)
class MarginSampling:
    """Pick the selectable rows whose two most likely classes are closest.

    Scores with :func:`margin_scores` (multilabel: :func:`multilabel_uncertainty_scores`).
    ``max_similarity``: cosine threshold of the near-duplicate filter over the view's
    embeddings (:func:`~app.strategies.dedupe.select_distinct`; ``1`` turns it off).
    Source: Scheffer, Decomain & Wrobel 2001, "Active Hidden Markov Models for Information
    Extraction".
    """

    max_similarity: float = DEFAULT_MAX_SIMILARITY

    requires: ClassVar[frozenset[str]] = frozenset({"probs"})
    tasks: ClassVar[frozenset[str]] = frozenset(TASKS)

    def __post_init__(self) -> None:
        _check_max_similarity(self.max_similarity)

    def select(self, view: PoolView, n: int, rng: np.random.Generator) -> Selection:
        """Return the ``n`` smallest-margin selectable positions, best first.

        Raises:
            ValueError: if ``n < 1``, or the probabilities have fewer than two columns.
            PoolExhausted: if fewer than ``n`` positions are selectable.
            ModelNotReady: if the view carries no ``probs``.
        """
        return _select_uncertain(view, n, rng, margin_scores, self.max_similarity)


@dataclass(frozen=True, slots=True)
class EntropySampling:
    """Pick the selectable rows whose predicted distribution has the highest entropy.

    Scores with :func:`entropy_scores` (multilabel: :func:`multilabel_uncertainty_scores`).
    ``max_similarity``: cosine threshold of the near-duplicate filter over the view's
    embeddings (:func:`~app.strategies.dedupe.select_distinct`; ``1`` turns it off).
    Source: Shannon entropy as an acquisition function, Settles 2009 "Active Learning
    Literature Survey".
    """

    max_similarity: float = DEFAULT_MAX_SIMILARITY

    requires: ClassVar[frozenset[str]] = frozenset({"probs"})
    tasks: ClassVar[frozenset[str]] = frozenset(TASKS)

    def __post_init__(self) -> None:
        _check_max_similarity(self.max_similarity)

    def select(self, view: PoolView, n: int, rng: np.random.Generator) -> Selection:
        """Return the ``n`` highest-entropy selectable positions, best first.

        Raises:
            ValueError: if ``n < 1``.
            PoolExhausted: if fewer than ``n`` positions are selectable.
            ModelNotReady: if the view carries no ``probs``.
        """
        return _select_uncertain(view, n, rng, entropy_scores, self.max_similarity)
