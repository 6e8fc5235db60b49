"""Hard-negative mining: for each anchor, the most similar items that are *not* of its class.

The recipe follows sentence-transformers' ``util.mine_hard_negatives`` (Reimers & Gurevych,
"Sentence-BERT", EMNLP 2019; the ``range_min`` / ``range_max`` / ``max_score`` /
``absolute_margin`` / ``sampling_strategy`` options and the skipped-candidate counters): search
the nearest neighbours once, mask every disqualified candidate to ``-inf``, then take the top
``k`` (or a random ``k``) of what survives, counting how many candidates each filter dropped.

Triplets ``(anchor, positive, negative)`` are the training unit of Schroff, Kalenichenko &
Philbin, "FaceNet: A Unified Embedding for Face Recognition and Clustering", CVPR 2015. Their
*semi-hard* negatives lie within a margin of the positive. The ``margin`` filter here is
sentence-transformers' ``absolute_margin``: it drops candidates whose similarity exceeds
``positive_similarity - margin`` (likely unlabeled positives, i.e. false negatives, or negatives
too hard to learn from), so what survives is at least ``margin`` less similar than the positive.

Every array is indexed by **position** (row of ``embeddings`` / position in the index).

Pipeline (each step is a small public function, tested on its own):

1. :func:`find_positives`: each anchor's most similar *other* item with the anchor's human label
   (exact, one matrix product per label group).
2. :func:`search_candidates`: one ``index.search`` of the anchors, deep enough for the rank
   window plus slack (repeated once, deeper, for anchors that ran short).
3. :func:`filter_reasons`: mark each candidate with the first filter that drops it, in the
   order ``self``, ``same_label``, ``margin``, ``max_similarity``, then ``range`` for the
   ``range_min`` best survivors (:func:`skip_range_min`).
4. :func:`select_top` / :func:`select_random`: ``k`` negatives per anchor from the window.
"""

import math
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Literal, NamedTuple

import numpy as np
import numpy.typing as npt

from app.sampling.mapped_pages import gather_rows
from app.sampling.vector_index import VectorIndex, as_float_matrix, normalize_rows
from app.strategies.base import BoolArray, FloatArray, IntArray

DROP_REASONS: tuple[str, ...] = (
    "self",
    "same_label",
    "excluded",
    "margin",
    "relative_margin",
    "max_similarity",
    "semi_hard",
    "predicted",
    "min_similarity",
    "range",
)
"""Names of the ``dropped`` counters (reason codes ``1 ..``, in this order)."""

ALIVE = 0
"""Reason code of a candidate that no filter dropped."""
(
    SELF,
    SAME_LABEL,
    EXCLUDED,
    MARGIN,
    RELATIVE_MARGIN,
    MAX_SIMILARITY,
    SEMI_HARD,
    PREDICTED,
    MIN_SIMILARITY,
    RANGE,
) = range(1, len(DROP_REASONS) + 1)
"""Reason codes, one per entry of :data:`DROP_REASONS`."""
NO_RESULT = len(DROP_REASONS) + 1
"""Reason code of an empty search slot (position ``-1``); never counted as dropped."""

Sampling = Literal["top", "random", "semi-hard"]
DEFAULT_SEMI_HARD_MARGIN = 0.1
"""Width of the semi-hard band in cosine similarity: FaceNet's alpha = 0.2 on squared L2
distances of unit vectors (``d^2 = 2 - 2 cos``) is 0.1 in cosine."""

RANDOM_WINDOW_FACTOR = 10
"""``sampling="random"`` without ``range_max`` samples from ``range_min + 10 * k`` survivors
(sentence-transformers' default candidate depth when filters are active)."""

_BLOCK_ENTRIES = 1 << 22  # at most ~4M anchor x candidate cells in memory per block
_BLOCK_ROWS = 4096  # anchors per block: their float32 vectors (and copies) ~6 MiB at d=384
_SAME_LABEL_SLACK_CAP = 1024  # first-pass extra depth for same-label neighbours, at most


class Triplets(NamedTuple):
    """Flat ``(anchor, positive, negative, similarity)`` arrays, one entry per mined negative.

    Attributes:
        anchor_positions: int64 ``[t]``.
        positive_positions: int64 ``[t]``; ``-1`` where the anchor has no positive.
        negative_positions: int64 ``[t]``.
        anchor_negative_similarities: float32 ``[t]`` cosine similarity of anchor and negative.
    """

    anchor_positions: IntArray
    positive_positions: IntArray
    negative_positions: IntArray
    anchor_negative_similarities: FloatArray


@dataclass(frozen=True, eq=False)
class MinedNegatives:
    """Mined negatives per anchor, hardest (most similar) first.

    Attributes:
        anchor_positions: int64 ``[a]`` the anchors, in the order given.
        positive_positions: int64 ``[a]`` most similar other item with the anchor's label;
            ``-1`` when there is none (unlabeled anchor, or no other member of its label).
        positive_similarities: float32 ``[a]`` cosine similarity to that positive; NaN if none.
        negative_positions: int64 ``[a, k]`` mined negatives in descending similarity;
            ``-1`` pads rows where fewer than ``k`` candidates survived.
        negative_similarities: float32 ``[a, k]`` their cosine similarity to the anchor; NaN
            padding.
        dropped: candidates removed by each filter, keyed by :data:`DROP_REASONS`. Counted over
            the candidates the selection looked at: for ``"top"``, those ranked up to the last
            window survivor; for ``"random"``, up to the end of the window; for an anchor that
            ran short, everything searched. ``"range"`` counts survivors skipped by
            ``range_min``.
    """

    anchor_positions: IntArray
    positive_positions: IntArray
    positive_similarities: FloatArray
    negative_positions: IntArray
    negative_similarities: FloatArray
    dropped: dict[str, int] = field(default_factory=dict)

    @property
    def n_found(self) -> IntArray:
        """int64 ``[a]``: how many negatives each anchor got (``<= k``)."""
        found: IntArray = (self.negative_positions >= 0).sum(axis=1).astype(np.int64)
        return found

    def triplets(self, *, require_positive: bool = False) -> Triplets:
        """Flatten to one entry per mined negative, anchor by anchor, hardest first.

        Args:
            require_positive: keep only anchors that have a positive (complete FaceNet triplets).

        Returns:
            :class:`Triplets` of flat arrays of equal length.
        """
        valid = self.negative_positions >= 0
        if require_positive:
            valid &= (self.positive_positions >= 0)[:, None]
        rows, cols = np.nonzero(valid)
        return Triplets(
            anchor_positions=self.anchor_positions[rows].astype(np.int64),
            positive_positions=self.positive_positions[rows].astype(np.int64),
            negative_positions=self.negative_positions[rows, cols].astype(np.int64),
            anchor_negative_similarities=self.negative_similarities[rows, cols].astype(np.float32),
        )


# --------------------------------------------------------------------------------------------
# Positives
# --------------------------------------------------------------------------------------------


def find_positives(
    embeddings: npt.ArrayLike,
    *,
    anchor_positions: IntArray,
    anchor_labels: IntArray,
    labels: IntArray,
) -> tuple[IntArray, FloatArray]:
    """Find each anchor's most cosine-similar *other* item with the anchor's human label.

    Exact: one float32 matrix product per label group (anchors in chunks to bound memory).
    Ties go to the lowest position.

    Args:
        embeddings: float32 ``[n, d]`` (may be a memory map; only label members are read).
        anchor_positions: int64 ``[a]`` anchor rows.
        anchor_labels: int64 ``[a]`` label of each anchor; ``-1`` means no label (no positive).
        labels: int64 ``[n]`` human label of every row; ``-1`` unlabeled.

    Returns:
        ``(positive_positions, positive_similarities)``: int64 ``[a]`` (``-1`` when none) and
        float32 ``[a]`` (NaN when none).

    Raises:
        ValueError: if a row that is read holds NaN/inf.
    """
    n_anchors = anchor_positions.shape[0]
    positive_positions = np.full(n_anchors, -1, dtype=np.int64)
    positive_similarities = np.full(n_anchors, np.nan, dtype=np.float32)
    labeled_rows = np.flatnonzero(anchor_labels >= 0)
    if labeled_rows.size == 0:
        return positive_positions, positive_similarities
    members_by_label = np.argsort(labels, kind="stable")
    sorted_labels = labels[members_by_label]
    rows_by_label = labeled_rows[np.argsort(anchor_labels[labeled_rows], kind="stable")]
    row_labels = anchor_labels[rows_by_label]
    group_labels, group_starts = np.unique(row_labels, return_index=True)
    group_ends = np.append(group_starts[1:], row_labels.shape[0])
    for label, row_start, row_end in zip(group_labels, group_starts, group_ends, strict=True):
        low, high = np.searchsorted(sorted_labels, [label, label + 1], side="left")
        members = members_by_label[low:high]  # ascending positions (stable sort)
        if members.size == 0:
            continue
        member_vectors = normalize_rows(
            as_float_matrix(gather_rows(embeddings, members), name="embeddings")
        )
        group_rows = rows_by_label[row_start:row_end]
        for chunk in _chunks(group_rows, max(1, _BLOCK_ENTRIES // members.size)):
            chunk_positions = anchor_positions[chunk]
            anchor_vectors = normalize_rows(
                as_float_matrix(gather_rows(embeddings, chunk_positions), name="embeddings")
            )
            similarities = anchor_vectors @ member_vectors.T
            similarities[members[None, :] == chunk_positions[:, None]] = -np.inf
            best = similarities.argmax(axis=1)
            best_similarities = similarities[np.arange(chunk.size), best]
            found = best_similarities > -np.inf
            positive_positions[chunk] = np.where(found, members[best], -1)
            positive_similarities[chunk] = np.where(found, best_similarities, np.nan)
    return positive_positions, positive_similarities


def given_positives(
    embeddings: FloatArray, *, anchor_positions: IntArray, positive_positions: npt.ArrayLike
) -> tuple[IntArray, FloatArray]:
    """Check given ``(anchor, positive)`` pairs and return ``(positive_positions [a],
    positive_similarities [a])``: int64 (``-1`` none) and float32 cosine (NaN for none).

    Raises:
        ValueError: wrong length, a position outside the rows, or NaN/inf in a row read.
    """
    n_rows = int(embeddings.shape[0])
    positives = _int_vector(
        positive_positions, name="positive_positions", length=anchor_positions.shape[0], minimum=-1
    )
    if positives.size and positives.max() >= n_rows:
        raise ValueError(f"positive_positions must lie in [-1, {n_rows})")
    similarities = np.full(positives.shape[0], np.nan, dtype=np.float32)
    rows = np.flatnonzero(positives >= 0)
    for chunk in _chunks(rows, _BLOCK_ROWS):
        # gather_rows: a read-only map streams in sorted pieces instead of staying resident
        a = normalize_rows(
            as_float_matrix(gather_rows(embeddings, anchor_positions[chunk]), name="embeddings")
        )
        p = normalize_rows(
            as_float_matrix(gather_rows(embeddings, positives[chunk]), name="embeddings")
        )
        similarities[chunk] = np.einsum("ij,ij->i", a, p)
    return positives, similarities


# --------------------------------------------------------------------------------------------
# Candidates and filters (mask, never delete: columns keep their similarity rank)
# --------------------------------------------------------------------------------------------


def search_candidates(
    index: VectorIndex, anchor_vectors: FloatArray, depth: int
) -> tuple[FloatArray, IntArray]:
    """Nearest neighbours of the anchors, most similar first.

    Args:
        index: index over the same rows as ``embeddings``.
        anchor_vectors: float32 ``[a, d]`` anchor embeddings.
        depth: neighbours per anchor, ``>= 1``.

    Returns:
        ``(similarities, positions)``: float32 ``[a, depth]`` (``-inf`` for empty slots) and
        int64 ``[a, depth]`` (``-1`` for empty slots), each row sorted by descending similarity.
    """
    similarities, positions = index.search(anchor_vectors, depth)
    order = np.argsort(-similarities, axis=1, kind="stable")  # faiss sorts; make it a contract
    return (
        np.take_along_axis(similarities, order, axis=1),
        np.take_along_axis(positions, order, axis=1),
    )


def self_mask(positions: IntArray, anchor_positions: IntArray) -> BoolArray:
    """bool ``[a, c]``: the candidate is the anchor itself.

    Args:
        positions: int64 ``[a, c]`` candidate positions.
        anchor_positions: int64 ``[a]``.
    """
    return np.asarray(positions == anchor_positions[:, None])


def same_label_mask(positions: IntArray, labels: IntArray, anchor_labels: IntArray) -> BoolArray:
    """bool ``[a, c]``: a human labeled the candidate with the anchor's label.

    Args:
        positions: int64 ``[a, c]`` candidate positions (``-1`` = empty slot, never masked).
        labels: int64 ``[n]`` human labels (``-1`` unlabeled).
        anchor_labels: int64 ``[a]`` (``-1``: the anchor has no label, nothing is masked).
    """
    valid = positions >= 0
    candidate_labels = labels[np.where(valid, positions, 0)]
    return np.asarray(
        valid & (anchor_labels[:, None] >= 0) & (candidate_labels == anchor_labels[:, None])
    )


def margin_mask(
    similarities: FloatArray, positive_similarities: FloatArray, margin: float
) -> BoolArray:
    """bool ``[a, c]``: similarity above ``positive_similarity - margin`` (rows with a positive).

    Args:
        similarities: float32 ``[a, c]`` anchor-candidate similarities.
        positive_similarities: float32 ``[a]`` anchor-positive similarity, NaN = no positive.
        margin: absolute margin (sentence-transformers ``absolute_margin``).
    """
    threshold = positive_similarities.astype(np.float32) - np.float32(margin)
    return np.asarray(similarities > threshold[:, None])  # NaN threshold: never masks


def max_similarity_mask(similarities: FloatArray, max_similarity: float) -> BoolArray:
    """bool ``[a, c]``: similarity above ``max_similarity`` (near-duplicates of the anchor).

    Args:
        similarities: float32 ``[a, c]``.
        max_similarity: largest similarity a negative may have.
    """
    return np.asarray(similarities > np.float32(max_similarity))


def floor_mask(
    similarities: FloatArray,
    *,
    positive_similarities: FloatArray,
    min_similarity: float | None = None,
    semi_hard_margin: float | None = None,
) -> tuple[BoolArray, BoolArray]:
    """Where each row's walk down the ranking ends: below the similarity floor.

    The floor is ``min_similarity`` and, for semi-hard mining, the bottom of the semi-hard band
    ``positive_similarity - semi_hard_margin`` (``+inf`` for anchors without a positive: they
    get no semi-hard negatives). Rows are sorted, so everything after the first column below
    the floor is below it too.

    Args:
        similarities: float32 ``[a, c]``, rows descending.
        positive_similarities: float32 ``[a]`` (NaN: no positive).
        min_similarity: similarity floor, or None.
        semi_hard_margin: band width for semi-hard mining, or None.

    Returns:
        ``(below_min_similarity, below_semi_hard_band)``: bool ``[a, c]`` each; a column in both
        belongs to the first.
    """
    below_min = np.zeros(similarities.shape, dtype=bool)
    if min_similarity is not None:
        below_min = np.asarray(similarities < np.float32(min_similarity))
    below_band = np.zeros(similarities.shape, dtype=bool)
    if semi_hard_margin is not None:
        bottom = positive_similarities.astype(np.float32) - np.float32(semi_hard_margin)
        bottom = np.where(np.isnan(bottom), np.float32(np.inf), bottom)
        below_band = np.asarray(similarities < bottom[:, None]) & ~below_min
    return below_min, below_band


def filter_reasons(
    similarities: FloatArray,
    positions: IntArray,
    *,
    anchor_positions: IntArray,
    anchor_labels: IntArray,
    labels: IntArray,
    positive_positions: IntArray,
    positive_similarities: FloatArray,
    exclude_same_label: bool = True,
    margin: float | None = None,
    max_similarity: float | None = None,
    relative_margin: float | None = None,
    min_similarity: float | None = None,
    semi_hard_margin: float | None = None,
    candidate_mask: BoolArray | None = None,
    probs: FloatArray | None = None,
    max_predicted_probability: float | None = None,
) -> npt.NDArray[np.int8]:
    """Tag each candidate with the first filter that drops it.

    Order: ``self``; then the floor (``min_similarity`` / the bottom of the semi-hard band, see
    :func:`floor_mask`), which ends the walk; then ``same_label``, ``excluded``, ``margin``,
    ``relative_margin``, ``max_similarity``, ``semi_hard`` (at least as similar as the
    positive), ``predicted``. A candidate counts for the first one only. The anchor's own
    positive is never a negative, even with ``exclude_same_label=False`` (it is tagged
    ``SAME_LABEL``). Empty slots (position ``-1``) get :data:`NO_RESULT`.

    Args:
        similarities: float32 ``[a, c]`` from :func:`search_candidates`.
        positions: int64 ``[a, c]``.
        anchor_positions: int64 ``[a]``.
        anchor_labels: int64 ``[a]`` (``-1`` none).
        labels: int64 ``[n]`` human labels (``-1`` unlabeled).
        positive_positions: int64 ``[a]`` (``-1`` none), from :func:`find_positives`.
        positive_similarities: float32 ``[a]`` (NaN none), from :func:`find_positives`.
        exclude_same_label: drop every candidate with the anchor's label (else only the
            positive itself).
        margin: drop similarity ``> positive - margin`` when not None.
        max_similarity: drop similarity ``> max_similarity`` when not None.
        relative_margin: drop similarity ``> positive - |positive| * relative_margin`` when not
            None (sentence-transformers ``relative_margin``, sign-safe since its #3819).
        min_similarity: floor: drop similarity ``< min_similarity``.
        semi_hard_margin: semi-hard band width (Schroff et al. 2015): keep only
            ``positive - semi_hard_margin <= similarity < positive``.
        candidate_mask: bool ``[n]`` rows allowed as negatives (``excluded`` otherwise).
        probs: float32 ``[m, n_classes]`` predicted probabilities of rows ``0 .. m - 1``
            (rows ``>= m`` have no prediction and are never dropped by it).
        max_predicted_probability: drop candidates predicted as the anchor's label with a
            probability above this (anchors with a label only).

    Returns:
        int8 ``[a, c]`` reason codes: :data:`ALIVE`, a code of :data:`DROP_REASONS`, or
        :data:`NO_RESULT`.
    """
    reasons = np.where(positions < 0, NO_RESULT, ALIVE).astype(np.int8)
    valid = positions >= 0
    safe = np.where(valid, positions, 0)
    below_min, below_band = floor_mask(
        similarities,
        positive_similarities=positive_similarities,
        min_similarity=min_similarity,
        semi_hard_margin=semi_hard_margin,
    )
    masks: list[tuple[int, BoolArray]] = [
        (SELF, self_mask(positions, anchor_positions)),
        (MIN_SIMILARITY, below_min),
        (SEMI_HARD, below_band),
    ]
    is_positive = np.asarray((positions == positive_positions[:, None]) & valid)
    if exclude_same_label:
        same = same_label_mask(positions, labels, anchor_labels)
        masks.append((SAME_LABEL, np.asarray(same | is_positive)))
    else:
        masks.append((SAME_LABEL, is_positive))
    if candidate_mask is not None:
        masks.append((EXCLUDED, np.asarray(valid & ~candidate_mask[safe])))
    if margin is not None:
        masks.append((MARGIN, margin_mask(similarities, positive_similarities, margin)))
    if relative_margin is not None:
        positive = positive_similarities.astype(np.float32)
        threshold = positive - np.abs(positive) * np.float32(relative_margin)
        masks.append((RELATIVE_MARGIN, np.asarray(similarities > threshold[:, None])))
    if max_similarity is not None:
        masks.append((MAX_SIMILARITY, max_similarity_mask(similarities, max_similarity)))
    if semi_hard_margin is not None:
        harder = similarities >= positive_similarities.astype(np.float32)[:, None]
        no_positive = np.isnan(positive_similarities)[:, None]
        masks.append((SEMI_HARD, np.asarray(harder | (no_positive & valid))))
    if probs is not None and max_predicted_probability is not None:
        masks.append(
            (
                PREDICTED,
                predicted_mask(
                    positions,
                    probs,
                    anchor_labels,
                    max_predicted_probability=max_predicted_probability,
                ),
            )
        )
    for code, mask in masks:
        reasons[(reasons == ALIVE) & mask] = code
    return reasons


def predicted_mask(
    positions: IntArray,
    probs: FloatArray,
    anchor_labels: IntArray,
    *,
    max_predicted_probability: float,
) -> BoolArray:
    """bool ``[a, c]``: the model predicts the candidate as the anchor's label too confidently.

    Args:
        positions: int64 ``[a, c]`` candidate positions (``-1`` empty).
        probs: float32 ``[m, n_classes]`` probabilities of rows ``0 .. m - 1``.
        anchor_labels: int64 ``[a]`` (``-1``: never masked).
        max_predicted_probability: threshold; strictly above it is masked.
    """
    n_scored, n_classes = probs.shape
    covered = (positions >= 0) & (positions < n_scored)
    label_ok = (anchor_labels >= 0) & (anchor_labels < n_classes)
    rows = np.where(covered, positions, 0)
    columns = np.where(label_ok, anchor_labels, 0)
    scores = np.asarray(probs)[rows, columns[:, None]]
    return np.asarray(covered & label_ok[:, None] & (scores > max_predicted_probability))


def survivor_ranks(reasons: npt.NDArray[np.int8]) -> IntArray:
    """int64 ``[a, c]``: rank of each surviving candidate among its row's survivors, else -1."""
    alive = reasons == ALIVE
    return np.where(alive, np.cumsum(alive, axis=1) - 1, -1).astype(np.int64)


def skip_range_min(reasons: npt.NDArray[np.int8], range_min: int) -> npt.NDArray[np.int8]:
    """Tag the ``range_min`` most similar survivors of each row :data:`RANGE` (new array)."""
    out = reasons.copy()
    ranks = survivor_ranks(reasons)
    out[(ranks >= 0) & (ranks < range_min)] = RANGE
    return out


def counted_columns(
    reasons: npt.NDArray[np.int8], need: int, floor: BoolArray | None = None
) -> BoolArray:
    """bool ``[a, c]``: columns up to the ``need``-th survivor; for rows with fewer survivors,
    up to the first column below the floor, else all columns.

    Args:
        reasons: int8 ``[a, c]`` from :func:`filter_reasons` (before :func:`skip_range_min`).
        need: survivors the selection looks at (``range_min`` plus the window).
        floor: bool ``[a, c]`` columns below the similarity floor (see :func:`floor_mask`).
    """
    n_columns = reasons.shape[1]
    reached = survivor_ranks(reasons) == need - 1
    end = np.full(reasons.shape[0], n_columns - 1)
    if floor is not None:
        end = np.where(floor.any(axis=1), floor.argmax(axis=1), end)
    last = np.where(reached.any(axis=1), reached.argmax(axis=1), end)
    return np.asarray(np.arange(n_columns)[None, :] <= last[:, None])


def count_dropped(reasons: npt.NDArray[np.int8], counted: BoolArray) -> IntArray:
    """int64 ``[a, len(DROP_REASONS)]``: per-row candidates dropped by each filter.

    Args:
        reasons: int8 ``[a, c]`` reason codes.
        counted: bool ``[a, c]`` which columns count (see :func:`counted_columns`).
    """
    codes = np.arange(1, len(DROP_REASONS) + 1, dtype=np.int8)
    hits = (reasons[:, :, None] == codes[None, None, :]) & counted[:, :, None]
    per_row: IntArray = hits.sum(axis=1).astype(np.int64)
    return per_row


def select_top(
    similarities: FloatArray, positions: IntArray, window: BoolArray, k: int
) -> tuple[IntArray, FloatArray]:
    """The first ``k`` candidates of each row's window (rows are sorted, best first).

    Args:
        similarities: float32 ``[a, c]``, rows descending.
        positions: int64 ``[a, c]``.
        window: bool ``[a, c]`` selectable candidates.
        k: negatives per anchor.

    Returns:
        ``(negative_positions, negative_similarities)``: int64 ``[a, k]`` (``-1`` padding) and
        float32 ``[a, k]`` (NaN padding).
    """
    ranks = np.cumsum(window, axis=1) - 1
    rows, cols = np.nonzero(window & (ranks < k))
    return _scatter(similarities, positions, rows, cols, ranks[rows, cols], k)


def select_random(
    similarities: FloatArray,
    positions: IntArray,
    window: BoolArray,
    k: int,
    rng: np.random.Generator,
) -> tuple[IntArray, FloatArray]:
    """``k`` candidates drawn uniformly without replacement from each row's window.

    The draws are returned best first; a row with fewer than ``k`` window members gets all of
    them.

    Args:
        similarities: float32 ``[a, c]``, rows descending.
        positions: int64 ``[a, c]``.
        window: bool ``[a, c]`` selectable candidates.
        k: negatives per anchor.
        rng: seeded generator; one ``random((a, c))`` draw per call.

    Returns:
        Same as :func:`select_top`.
    """
    n_rows, n_columns = window.shape
    keys = rng.random((n_rows, n_columns))
    keys[~window] = np.inf
    take = min(k, n_columns)
    if take < n_columns:
        drawn = np.argpartition(keys, take - 1, axis=1)[:, :take]
    else:
        drawn = np.broadcast_to(np.arange(n_columns), (n_rows, n_columns)).copy()
    drawn_ok = np.take_along_axis(window, drawn, axis=1)
    drawn = np.sort(np.where(drawn_ok, drawn, n_columns), axis=1)  # column order = best first
    rows, slots = np.nonzero(drawn < n_columns)
    return _scatter(similarities, positions, rows, drawn[rows, slots], slots, k)


def _scatter(
    similarities: FloatArray,
    positions: IntArray,
    rows: IntArray,
    cols: IntArray,
    slots: IntArray,
    k: int,
) -> tuple[IntArray, FloatArray]:
    """Place candidates ``(rows, cols)`` into ``[a, k]`` outputs at ``slots``."""
    negative_positions = np.full((positions.shape[0], k), -1, dtype=np.int64)
    negative_similarities = np.full((positions.shape[0], k), np.nan, dtype=np.float32)
    negative_positions[rows, slots] = positions[rows, cols]
    negative_similarities[rows, slots] = similarities[rows, cols]
    return negative_positions, negative_similarities


# --------------------------------------------------------------------------------------------
# Search depth
# --------------------------------------------------------------------------------------------


def initial_depth(*, need: int, same_label_count: int, ntotal: int) -> int:
    """Neighbours to fetch on the first search: self + ``need`` + slack + same-label room.

    Args:
        need: survivors the selection looks at.
        same_label_count: largest number of same-label items any anchor must skip (0 if the
            same-label filter is off); capped so one huge class cannot blow up the first pass.
        ntotal: index size (upper bound).
    """
    slack = max(need, 16)
    return max(1, min(ntotal, 1 + need + slack + min(same_label_count, _SAME_LABEL_SLACK_CAP)))


def widened_depth(
    *, depth: int, need: int, examined: IntArray, survived: IntArray, ntotal: int
) -> int:
    """Depth for the one repeat search of anchors that ran short.

    Extrapolates each short anchor's survival rate (with 1.5x head room), at least 4x the first
    depth, at most ``ntotal``.

    Args:
        depth: first-pass depth.
        need: survivors wanted.
        examined: int64 ``[s]`` non-empty candidates each short anchor got.
        survived: int64 ``[s]`` how many of those survived the filters.
        ntotal: index size.
    """
    estimate = np.ceil(1.5 * need * examined / np.maximum(survived, 1))
    wanted = max(4 * depth, int(estimate.max()) if estimate.size else 0)
    return max(1, min(ntotal, wanted))


# --------------------------------------------------------------------------------------------
# Entry point
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Settings:
    """Validated knobs shared by every block."""

    k: int
    range_min: int
    window_end: int  # survivor rank (exclusive) where the window ends; "need"
    sampling: Sampling
    exclude_same_label: bool
    margin: float | None
    max_similarity: float | None
    relative_margin: float | None = None
    min_similarity: float | None = None
    semi_hard_margin: float | None = None
    max_predicted_probability: float | None = None


@dataclass(frozen=True)
class _Block:
    """Results of mining one block of anchors at one depth."""

    negative_positions: IntArray
    negative_similarities: FloatArray
    dropped: IntArray  # [b, len(DROP_REASONS)]
    short: BoolArray  # [b] fewer survivors than needed and the index was not exhausted
    examined: IntArray  # [b] non-empty candidates
    survived: IntArray  # [b] survivors before range_min


def mine_hard_negatives(
    index: VectorIndex,
    embeddings: npt.ArrayLike,
    *,
    anchor_positions: npt.ArrayLike,
    labels: npt.ArrayLike,
    anchor_labels: npt.ArrayLike | None = None,
    k: int = 10,
    range_min: int = 0,
    range_max: int | None = None,
    max_similarity: float | None = None,
    margin: float | None = None,
    exclude_same_label: bool = True,
    sampling: Sampling = "top",
    rng: np.random.Generator | None = None,
    relative_margin: float | None = None,
    min_similarity: float | None = None,
    semi_hard_margin: float = DEFAULT_SEMI_HARD_MARGIN,
    candidate_mask: npt.ArrayLike | None = None,
    probs: npt.ArrayLike | None = None,
    max_predicted_probability: float | None = None,
    positive_positions: npt.ArrayLike | None = None,
    max_candidates: int | None = None,
) -> MinedNegatives:
    """Mine the ``k`` hardest negatives of each anchor from a vector index.

    Follows sentence-transformers' ``mine_hard_negatives`` (Reimers & Gurevych 2019): one
    nearest-neighbour search, filters that mask candidates to ``-inf`` and count what they drop,
    then a rank window and top-``k`` or random-``k`` sampling. Each anchor also gets a positive
    (its most similar other item of the same human label) so the result forms FaceNet triplets
    (Schroff et al. 2015) and the ``margin`` filter has a reference.

    Candidates, in descending cosine similarity, are dropped by the first filter that applies:

    - ``self``: the anchor's own position;
    - ``same_label``: a human gave it the anchor's label (when ``exclude_same_label``; the
      anchor's positive itself is dropped either way);
    - ``min_similarity``: similarity ``< min_similarity``; the first such candidate ends the
      anchor's walk (everything after it is lower still), so it counts once per anchor;
    - ``excluded``: not allowed by ``candidate_mask`` (e.g. positive-only mining keeps only
      unlabeled rows);
    - ``margin``: similarity ``> positive_similarity - margin`` (anchors with a positive only);
    - ``relative_margin``: similarity ``> positive - |positive| * relative_margin`` (i.e.
      ``positive * (1 - relative_margin)`` for a positive similarity);
    - ``max_similarity``: similarity ``> max_similarity``;
    - ``semi_hard`` (``sampling="semi-hard"``): similarity ``>= positive_similarity``, or below
      the band ``positive_similarity - semi_hard_margin`` (which ends the walk like the floor);
      anchors without a positive get no semi-hard negatives;
    - ``predicted``: ``probs[candidate, anchor_label] > max_predicted_probability``;
    - ``range``: one of the ``range_min`` most similar survivors.

    ``self`` is checked first, the floor second, then ``same_label`` and the rest in the order
    listed.

    The window is survivor ranks ``[range_min, range_max)``; note that sentence-transformers
    counts ``range_max`` over raw neighbour ranks, here it counts surviving candidates, so a
    class that crowds an anchor's neighbourhood cannot empty the window. ``"top"`` takes the
    first ``k`` of the window, ``"random"`` draws ``k`` uniformly from it, ``"semi-hard"`` takes
    the first ``k`` semi-hard survivors: the hardest negatives that are still less similar than
    the positive (Schroff et al. 2015; TensorFlow Addons' ``triplet_semihard_loss`` picks the
    hardest semi-hard negative the same way).

    The first search fetches ``1 + need + slack`` neighbours (plus room for same-label items);
    anchors with fewer than ``need`` survivors are searched once more, deeper. Anchors still
    short afterwards get ``-1`` / NaN padding.

    Args:
        index: VectorIndex over the first ``index.ntotal`` rows of ``embeddings``.
        embeddings: float32 ``[n, d]`` the indexed vectors, optionally followed by query-only
            rows (e.g. raw-text anchors; never candidates). May be a memory map; only anchor
            and label-member rows are read.
        anchor_positions: int64 ``[a]`` rows to mine for (duplicates allowed).
        labels: int64 ``[n]`` human label class index per row, ``-1`` unlabeled.
        anchor_labels: int64 ``[a]`` label of each anchor; defaults to
            ``labels[anchor_positions]``; ``-1`` means the anchor has no label (no positive, no
            same-label filter, no margin).
        k: negatives per anchor, ``>= 1``.
        range_min: skip this many most similar surviving candidates (likely false negatives).
        range_max: only consider the ``range_max`` most similar surviving candidates
            (``> range_min``). Default: unbounded for ``"top"``, ``range_min + 10 * k`` for
            ``"random"``.
        max_similarity: drop candidates more similar than this to the anchor.
        margin: drop candidates whose similarity exceeds the anchor-positive similarity minus
            ``margin`` (sentence-transformers ``absolute_margin``); anchors without a positive
            are not affected.
        exclude_same_label: never mine an item a human labeled with the anchor's label. When
            False, only the anchor's positive itself is excluded.
        sampling: ``"top"`` (hardest first), ``"random"`` (uniform within the window) or
            ``"semi-hard"`` (hardest within the semi-hard band).
        rng: generator for ``"random"``; pass a seeded one for reproducible results.
        relative_margin: drop candidates more similar than ``positive - |positive| *
            relative_margin`` (sentence-transformers ``relative_margin``), anchors with a
            positive only.
        min_similarity: similarity floor.
        semi_hard_margin: semi-hard band width in cosine similarity (``"semi-hard"`` only).
        candidate_mask: bool ``[n]`` rows that may be negatives (default: all).
        probs: float32 ``[m, n_classes]`` predicted class probabilities of rows ``0 .. m - 1``
            (``m <= n``; newer rows have no prediction).
        max_predicted_probability: with ``probs``, drop candidates predicted as the anchor's
            label above this probability (likely false negatives).
        positive_positions: int64 ``[a]`` each anchor's given positive (an
            ``(anchor, positive)`` pair, as sentence-transformers takes them; ``-1`` for none)
            instead of the most similar same-label item; the margins then compare against
            that pair's similarity, and the positive is never mined.
        max_candidates: search at most this many nearest neighbours per anchor (raw ranks,
            the anchor itself and its positive included: sentence-transformers'
            ``range_max + max_positives``); anchors whose candidates run out get fewer than
            ``k`` negatives instead of a deeper search. A cap within 4x the first-pass depth
            is searched in one pass (the repeat would have gone to the cap anyway). None: no
            cap.

    Returns:
        :class:`MinedNegatives` with one row per anchor.

    Raises:
        ValueError: for arrays of the wrong shape, dtype or range, embeddings that do not match
            the index, NaN/inf in rows read, or out-of-range parameters.
    """
    matrix = _check_embeddings(embeddings, index)
    n_rows = int(matrix.shape[0])
    anchors = _int_vector(anchor_positions, name="anchor_positions")
    if anchors.size and (anchors.min() < 0 or anchors.max() >= n_rows):
        raise ValueError(f"anchor_positions must lie in [0, {n_rows})")
    row_labels = _int_vector(labels, name="labels", length=n_rows, minimum=-1)
    if anchor_labels is None:
        anchor_label_array = row_labels[anchors]
    else:
        anchor_label_array = _int_vector(
            anchor_labels, name="anchor_labels", length=anchors.shape[0], minimum=-1
        )
    settings = _settings(
        k=k,
        range_min=range_min,
        range_max=range_max,
        sampling=sampling,
        exclude_same_label=exclude_same_label,
        margin=margin,
        max_similarity=max_similarity,
        relative_margin=relative_margin,
        min_similarity=min_similarity,
        semi_hard_margin=semi_hard_margin,
        max_predicted_probability=max_predicted_probability,
    )
    allowed = None
    if candidate_mask is not None:
        allowed = np.asarray(candidate_mask)
        if allowed.dtype != np.bool_ or allowed.shape != (n_rows,):
            raise ValueError(f"candidate_mask must be bool of shape ({n_rows},)")
    prob_matrix = None
    if probs is not None and settings.max_predicted_probability is not None:
        prob_matrix = np.asarray(probs)
        if prob_matrix.ndim != 2 or prob_matrix.shape[0] > n_rows:
            raise ValueError(f"probs must be [m <= {n_rows}, n_classes], got {prob_matrix.shape}")
    generator = rng if rng is not None else np.random.default_rng()

    if positive_positions is None:
        positive_positions, positive_similarities = find_positives(
            matrix, anchor_positions=anchors, anchor_labels=anchor_label_array, labels=row_labels
        )
    else:
        positive_positions, positive_similarities = given_positives(
            matrix, anchor_positions=anchors, positive_positions=positive_positions
        )

    n_anchors = anchors.shape[0]
    negative_positions = np.full((n_anchors, settings.k), -1, dtype=np.int64)
    negative_similarities = np.full((n_anchors, settings.k), np.nan, dtype=np.float32)
    dropped = np.zeros((n_anchors, len(DROP_REASONS)), dtype=np.int64)

    same_label_count = 0
    if settings.exclude_same_label and n_anchors:
        class_sizes = np.bincount(row_labels[row_labels >= 0], minlength=1)
        labeled = anchor_label_array[(anchor_label_array >= 0)]
        labeled = labeled[labeled < class_sizes.shape[0]]
        same_label_count = int(class_sizes[labeled].max()) if labeled.size else 0
    if max_candidates is not None and (not _is_int(max_candidates) or max_candidates < 1):
        raise ValueError(f"max_candidates must be an integer >= 1, got {max_candidates!r}")
    ceiling = index.ntotal if max_candidates is None else min(index.ntotal, int(max_candidates))
    depth = min(
        initial_depth(
            need=settings.window_end, same_label_count=same_label_count, ntotal=index.ntotal
        ),
        max(ceiling, 1),
    )
    if max_candidates is not None and ceiling <= 4 * depth:
        depth = max(ceiling, 1)  # a repeat would go straight to the cap: one search, not two

    def run(rows: IntArray, at_depth: int) -> list[tuple[IntArray, _Block]]:
        blocks = []
        for chunk in _chunks(rows, max(1, min(_BLOCK_ROWS, _BLOCK_ENTRIES // at_depth))):
            block = _mine_block(
                index,
                matrix,
                at_depth=at_depth,
                anchor_positions=anchors[chunk],
                anchor_labels=anchor_label_array[chunk],
                labels=row_labels,
                positive_positions=positive_positions[chunk],
                positive_similarities=positive_similarities[chunk],
                settings=settings,
                rng=generator,
                candidate_mask=allowed,
                probs=prob_matrix,
            )
            negative_positions[chunk] = block.negative_positions
            negative_similarities[chunk] = block.negative_similarities
            dropped[chunk] = block.dropped
            blocks.append((chunk, block))
        return blocks

    first = run(np.arange(n_anchors), depth)
    short_rows = np.concatenate(
        [chunk[block.short] for chunk, block in first] or [np.zeros(0, dtype=np.int64)]
    )
    if short_rows.size and depth < ceiling:
        examined = np.concatenate([block.examined[block.short] for _, block in first])
        survived = np.concatenate([block.survived[block.short] for _, block in first])
        deeper = widened_depth(
            depth=depth,
            need=settings.window_end,
            examined=examined,
            survived=survived,
            ntotal=index.ntotal,
        )
        run(short_rows, min(deeper, ceiling))

    return MinedNegatives(
        anchor_positions=anchors,
        positive_positions=positive_positions,
        positive_similarities=positive_similarities,
        negative_positions=negative_positions,
        negative_similarities=negative_similarities,
        dropped={name: int(dropped[:, i].sum()) for i, name in enumerate(DROP_REASONS)},
    )


def _mine_block(
    index: VectorIndex,
    embeddings: FloatArray,
    *,
    at_depth: int,
    anchor_positions: IntArray,
    anchor_labels: IntArray,
    labels: IntArray,
    positive_positions: IntArray,
    positive_similarities: FloatArray,
    settings: _Settings,
    rng: np.random.Generator,
    candidate_mask: BoolArray | None = None,
    probs: FloatArray | None = None,
) -> _Block:
    """Search, filter, window and select for one block of anchors."""
    similarities, positions = search_candidates(
        index, gather_rows(embeddings, anchor_positions), at_depth
    )
    reasons = filter_reasons(
        similarities,
        positions,
        anchor_positions=anchor_positions,
        anchor_labels=anchor_labels,
        labels=labels,
        positive_positions=positive_positions,
        positive_similarities=positive_similarities,
        exclude_same_label=settings.exclude_same_label,
        margin=settings.margin,
        max_similarity=settings.max_similarity,
        relative_margin=settings.relative_margin,
        min_similarity=settings.min_similarity,
        semi_hard_margin=settings.semi_hard_margin,
        candidate_mask=candidate_mask,
        probs=probs,
        max_predicted_probability=settings.max_predicted_probability,
    )
    need = settings.window_end
    below_min, below_band = floor_mask(
        similarities,
        positive_similarities=positive_similarities,
        min_similarity=settings.min_similarity,
        semi_hard_margin=settings.semi_hard_margin,
    )
    floor = (below_min | below_band) & (positions != anchor_positions[:, None])
    survived = (reasons == ALIVE).sum(axis=1).astype(np.int64)
    examined = (reasons != NO_RESULT).sum(axis=1).astype(np.int64)
    exhausted = (examined < at_depth) | (at_depth >= index.ntotal) | floor.any(axis=1)
    counted = counted_columns(reasons, need, floor)
    ranks = survivor_ranks(reasons)
    reasons = skip_range_min(reasons, settings.range_min)
    window = (ranks >= settings.range_min) & (ranks < need)
    if settings.sampling != "random":
        chosen = select_top(similarities, positions, window, settings.k)
    else:
        chosen = select_random(similarities, positions, window, settings.k, rng)
    return _Block(
        negative_positions=chosen[0],
        negative_similarities=chosen[1],
        dropped=count_dropped(reasons, counted),
        short=(survived < need) & ~exhausted,
        examined=examined,
        survived=survived,
    )


def _settings(
    *,
    k: int,
    range_min: int,
    range_max: int | None,
    sampling: str,
    exclude_same_label: bool,
    margin: float | None,
    max_similarity: float | None,
    relative_margin: float | None = None,
    min_similarity: float | None = None,
    semi_hard_margin: float = DEFAULT_SEMI_HARD_MARGIN,
    max_predicted_probability: float | None = None,
) -> _Settings:
    """Validate the scalar knobs and resolve the window end."""
    if not _is_int(k) or k < 1:
        raise ValueError(f"k must be an integer >= 1, got {k!r}")
    if not _is_int(range_min) or range_min < 0:
        raise ValueError(f"range_min must be an integer >= 0, got {range_min!r}")
    if range_max is not None and (not _is_int(range_max) or range_max <= range_min):
        raise ValueError(f"range_max must be an integer > range_min, got {range_max!r}")
    if sampling not in ("top", "random", "semi-hard"):
        raise ValueError(f"sampling must be 'top', 'random' or 'semi-hard', got {sampling!r}")
    for name, value in (
        ("margin", margin),
        ("max_similarity", max_similarity),
        ("relative_margin", relative_margin),
        ("min_similarity", min_similarity),
        ("semi_hard_margin", semi_hard_margin),
        ("max_predicted_probability", max_predicted_probability),
    ):
        if value is not None and not (_is_real(value) and math.isfinite(float(value))):
            raise ValueError(f"{name} must be a finite number, got {value!r}")
    if semi_hard_margin is not None and semi_hard_margin <= 0:
        raise ValueError(f"semi_hard_margin must be > 0, got {semi_hard_margin!r}")
    if sampling != "random":
        window_end = range_min + k if range_max is None else min(range_min + k, range_max)
    else:
        window_end = range_min + RANDOM_WINDOW_FACTOR * k if range_max is None else range_max
    return _Settings(
        k=int(k),
        range_min=int(range_min),
        window_end=int(window_end),
        sampling="random"
        if sampling == "random"
        else ("top" if sampling == "top" else "semi-hard"),
        exclude_same_label=bool(exclude_same_label),
        margin=None if margin is None else float(margin),
        max_similarity=None if max_similarity is None else float(max_similarity),
        relative_margin=None if relative_margin is None else float(relative_margin),
        min_similarity=None if min_similarity is None else float(min_similarity),
        semi_hard_margin=float(semi_hard_margin) if sampling == "semi-hard" else None,
        max_predicted_probability=(
            None if max_predicted_probability is None else float(max_predicted_probability)
        ),
    )


def _check_embeddings(embeddings: npt.ArrayLike, index: VectorIndex) -> FloatArray:
    """Check shape and dtype against the index without reading every row."""
    matrix = np.asarray(embeddings)
    if matrix.dtype.kind not in "iuf":
        raise ValueError(f"embeddings must hold real numbers, got dtype {matrix.dtype}")
    if matrix.ndim != 2:
        raise ValueError(f"embeddings must be 2-D [n, d], got shape {matrix.shape}")
    if matrix.shape[0] < index.ntotal or matrix.shape[1] != index.dim:
        raise ValueError(
            f"embeddings shape {matrix.shape} does not match the index "
            f"({index.ntotal} vectors of dim {index.dim})"
        )
    return matrix


def _int_vector(
    values: npt.ArrayLike, *, name: str, length: int | None = None, minimum: int | None = None
) -> IntArray:
    """Validate a 1-D integer array and return it as int64."""
    array = np.asarray(values)
    if array.ndim != 1:
        raise ValueError(f"{name} must be 1-D, got shape {array.shape}")
    if array.size == 0:
        array = array.astype(np.int64)
    if array.dtype.kind not in "iu":
        raise ValueError(f"{name} must hold integers, got dtype {array.dtype}")
    if length is not None and array.shape[0] != length:
        raise ValueError(f"{name} must have length {length}, got {array.shape[0]}")
    if minimum is not None and array.size and array.min() < minimum:
        raise ValueError(f"{name} must be >= {minimum}")
    return array.astype(np.int64, copy=False)


def _is_real(value: object) -> bool:
    """True for Python or numpy real numbers (not bools)."""
    return isinstance(value, int | float | np.integer | np.floating) and not isinstance(value, bool)


def _is_int(value: object) -> bool:
    """True for Python or numpy integers (not bools)."""
    return isinstance(value, int | np.integer) and not isinstance(value, bool)


def _chunks(rows: IntArray, size: int) -> Iterator[IntArray]:
    """Consecutive slices of ``rows`` of at most ``size`` entries."""
    for start in range(0, rows.shape[0], size):
        yield rows[start : start + size]
