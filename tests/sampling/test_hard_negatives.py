"""mine_hard_negatives against a brute-force ``embeddings @ embeddings.T`` reference.

The data has unequal numbers of labeled items per class (40, 20, 7, 2 and a singleton), 130
unlabeled rows, and labels correlated with clusters so that the same-label filter matters.
"""

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pytest

from app.sampling.hard_negatives import (
    ALIVE,
    DROP_REASONS,
    MARGIN,
    MAX_SIMILARITY,
    NO_RESULT,
    RANGE,
    SAME_LABEL,
    SELF,
    MinedNegatives,
    count_dropped,
    counted_columns,
    filter_reasons,
    find_positives,
    initial_depth,
    mine_hard_negatives,
    select_random,
    select_top,
    skip_range_min,
    survivor_ranks,
    widened_depth,
)
from app.sampling.vector_index import VectorIndex

CLASS_SIZES = (40, 20, 7, 2, 1)
N_ROWS, DIM = 200, 16


@dataclass
class Pool:
    embeddings: np.ndarray
    labels: np.ndarray
    anchors: np.ndarray
    index: VectorIndex = field(repr=False)


def make_pool(seed: int = 0) -> Pool:
    rng = np.random.default_rng(seed)
    centers = rng.normal(size=(len(CLASS_SIZES), DIM))
    labels = np.full(N_ROWS, -1, dtype=np.int64)
    cluster = rng.integers(0, len(CLASS_SIZES), size=N_ROWS)
    start = 0
    for label, size in enumerate(CLASS_SIZES):
        labels[start : start + size] = label
        cluster[start : start + size] = label
        start += size
    embeddings = (centers[cluster] + 0.9 * rng.normal(size=(N_ROWS, DIM))).astype(np.float32)
    order = rng.permutation(N_ROWS)  # labeled rows scattered over positions
    embeddings, labels = embeddings[order], labels[order]
    labeled = np.flatnonzero(labels >= 0)
    unlabeled = np.flatnonzero(labels < 0)[:12]
    anchors = np.concatenate([labeled, unlabeled]).astype(np.int64)
    return Pool(embeddings, labels, anchors, VectorIndex.build(embeddings, kind="flat"))


@pytest.fixture(scope="module")
def pool() -> Pool:
    return make_pool()


# --------------------------------------------------------------------------------------------
# The reference: one anchor at a time, exhaustive, plain Python control flow
# --------------------------------------------------------------------------------------------


@dataclass
class Reference:
    positive_positions: np.ndarray
    positive_similarities: np.ndarray
    windows: list[list[int]]  # survivors in the window per anchor, best first
    similarities: np.ndarray  # [a, n] anchor x all rows
    dropped: dict[str, int]

    def top(self, k: int) -> tuple[np.ndarray, np.ndarray]:
        positions = np.full((len(self.windows), k), -1, dtype=np.int64)
        sims = np.full((len(self.windows), k), np.nan, dtype=np.float32)
        for row, window in enumerate(self.windows):
            chosen = window[:k]
            positions[row, : len(chosen)] = chosen
            sims[row, : len(chosen)] = self.similarities[row, chosen]
        return positions, sims


def reference_mine(
    embeddings: np.ndarray,
    anchors: np.ndarray,
    labels: np.ndarray,
    anchor_labels: np.ndarray | None = None,
    *,
    k: int = 10,
    range_min: int = 0,
    range_max: int | None = None,
    max_similarity: float | None = None,
    margin: float | None = None,
    exclude_same_label: bool = True,
    sampling: str = "top",
    relative_margin: float | None = None,
    min_similarity: float | None = None,
    semi_hard_margin: float = 0.1,
    candidate_mask: np.ndarray | None = None,
    probs: np.ndarray | None = None,
    max_predicted_probability: float | None = None,
) -> Reference:
    normalized = embeddings / np.linalg.norm(embeddings, axis=1, keepdims=True)
    similarities = (normalized[anchors] @ normalized.T).astype(np.float32)
    if anchor_labels is None:
        anchor_labels = labels[anchors]
    if sampling != "random":
        need = range_min + k if range_max is None else min(range_min + k, range_max)
    else:
        need = range_min + 10 * k if range_max is None else range_max
    dropped = dict.fromkeys(DROP_REASONS, 0)
    positive_positions = np.full(len(anchors), -1, dtype=np.int64)
    positive_similarities = np.full(len(anchors), np.nan, dtype=np.float32)
    windows = []
    for row, (anchor, label) in enumerate(zip(anchors, anchor_labels, strict=True)):
        row_sims = similarities[row]
        if label >= 0:
            members = [j for j in np.flatnonzero(labels == label) if j != anchor]
            if members:
                best = max(members, key=lambda j: (row_sims[j], -j))
                positive_positions[row] = best
                positive_similarities[row] = row_sims[best]
        has_positive = not np.isnan(positive_similarities[row])
        pos_sim = np.float32(positive_similarities[row])
        band_bottom = -np.inf
        if sampling == "semi-hard":
            band_bottom = pos_sim - np.float32(semi_hard_margin) if has_positive else np.inf
        survivors: list[int] = []
        for candidate in np.argsort(-row_sims, kind="stable"):
            sim = row_sims[candidate]
            if candidate == anchor:
                reason = "self"
            elif min_similarity is not None and sim < np.float32(min_similarity):
                dropped["min_similarity"] += 1
                break  # sorted: everything after is below the floor too
            elif sim < band_bottom:
                dropped["semi_hard"] += 1
                break
            elif (exclude_same_label and label >= 0 and labels[candidate] == label) or (
                candidate == positive_positions[row]
            ):
                reason = "same_label"
            elif candidate_mask is not None and not candidate_mask[candidate]:
                reason = "excluded"
            elif (
                margin is not None
                and has_positive
                and sim > np.float32(positive_similarities[row]) - np.float32(margin)
            ):
                reason = "margin"
            elif (
                relative_margin is not None
                and has_positive
                and sim > pos_sim - abs(pos_sim) * np.float32(relative_margin)
            ):
                reason = "relative_margin"
            elif max_similarity is not None and sim > np.float32(max_similarity):
                reason = "max_similarity"
            elif sampling == "semi-hard" and sim >= pos_sim:
                reason = "semi_hard"
            elif (
                probs is not None
                and max_predicted_probability is not None
                and label >= 0
                and candidate < probs.shape[0]
                and probs[candidate, label] > max_predicted_probability
            ):
                reason = "predicted"
            else:
                survivors.append(int(candidate))
                if len(survivors) == need:
                    break
                continue
            dropped[reason] += 1
        dropped["range"] += min(range_min, len(survivors))
        windows.append(survivors[range_min:need])
    return Reference(positive_positions, positive_similarities, windows, similarities, dropped)


def assert_matches_reference(result: MinedNegatives, ref: Reference, k: int) -> None:
    ref_positions, ref_similarities = ref.top(k)
    np.testing.assert_array_equal(result.negative_positions, ref_positions)
    np.testing.assert_allclose(result.negative_similarities, ref_similarities, atol=1e-5)
    np.testing.assert_array_equal(result.positive_positions, ref.positive_positions)
    np.testing.assert_allclose(result.positive_similarities, ref.positive_similarities, atol=1e-5)
    assert result.dropped == ref.dropped


CONFIGS: list[dict[str, Any]] = [
    {},
    {"k": 5, "range_min": 3},
    {"margin": 0.05},
    {"margin": -0.1},
    {"max_similarity": 0.6},
    {"k": 4, "range_min": 2, "range_max": 5, "margin": 0.1, "max_similarity": 0.7},
    {"exclude_same_label": False},
    {"exclude_same_label": False, "margin": 0.0, "range_min": 1},
    {"k": 40},
    {"k": 3, "max_similarity": 0.1},  # most candidates dropped: forces the deeper repeat
    {"relative_margin": 0.05},
    {"relative_margin": 0.2, "margin": 0.01, "k": 4},
    {"min_similarity": 0.3},
    {"min_similarity": 0.9, "k": 3},  # most anchors run short at the floor
    {"sampling": "semi-hard"},
    {"sampling": "semi-hard", "semi_hard_margin": 0.3, "k": 5, "range_min": 1},
    {"sampling": "semi-hard", "min_similarity": 0.5, "relative_margin": 0.01},
    {"candidate_mask": "unlabeled"},
    {"candidate_mask": "unlabeled", "min_similarity": 0.2, "k": 4},
    {"max_predicted_probability": 0.5},
    {"max_predicted_probability": 0.2, "margin": 0.02, "k": 5},
]


def _materialize(pool: Pool, params: dict[str, Any]) -> dict[str, Any]:
    """Turn symbolic params (masks, probabilities) into arrays for this pool."""
    out = dict(params)
    if out.get("candidate_mask") == "unlabeled":
        out["candidate_mask"] = pool.labels < 0
    if "max_predicted_probability" in out:
        rng = np.random.default_rng(7)
        scored = N_ROWS - 20  # the newest rows have no prediction
        raw = rng.random((scored, len(CLASS_SIZES))).astype(np.float32) ** 3
        out["probs"] = raw / raw.sum(axis=1, keepdims=True)
    return out


@pytest.mark.parametrize(
    "params", CONFIGS, ids=lambda p: ",".join(f"{k}={v}" for k, v in p.items())
)
def test_top_sampling_matches_brute_force_reference(pool: Pool, params: dict[str, Any]) -> None:
    k = params.get("k", 10)
    params = _materialize(pool, params)
    result = mine_hard_negatives(
        pool.index, pool.embeddings, anchor_positions=pool.anchors, labels=pool.labels, **params
    )
    ref = reference_mine(pool.embeddings, pool.anchors, pool.labels, **params)

    assert result.negative_positions.shape == (len(pool.anchors), k)
    assert result.negative_positions.dtype == np.int64
    assert result.negative_similarities.dtype == np.float32
    assert result.positive_similarities.dtype == np.float32
    np.testing.assert_array_equal(result.anchor_positions, pool.anchors)
    assert_matches_reference(result, ref, k)


def test_reference_fixture_has_unequal_positives_and_unlabeled_rows(pool: Pool) -> None:
    counts = np.bincount(pool.labels[pool.labels >= 0])
    assert sorted(counts.tolist(), reverse=True) == list(CLASS_SIZES)
    assert (pool.labels[pool.anchors] < 0).sum() == 12


def test_same_label_and_self_never_mined(pool: Pool) -> None:
    result = mine_hard_negatives(
        pool.index, pool.embeddings, anchor_positions=pool.anchors, labels=pool.labels, k=30
    )
    negatives = result.negative_positions
    valid = negatives >= 0
    anchor_labels = pool.labels[pool.anchors][:, None]
    mined_labels = pool.labels[np.where(valid, negatives, 0)]
    assert not np.any(valid & (anchor_labels >= 0) & (mined_labels == anchor_labels))
    assert not np.any(negatives == pool.anchors[:, None])
    assert result.dropped["self"] == len(pool.anchors)
    assert result.dropped["same_label"] > 0
    # no duplicates within a row, best first
    for row in negatives:
        kept = row[row >= 0]
        assert len(set(kept.tolist())) == kept.size
    sims = result.negative_similarities
    assert np.all(np.diff(np.where(np.isnan(sims), -np.inf, sims), axis=1) <= 1e-6)


def test_margin_drops_only_what_it_should(pool: Pool) -> None:
    margin = 0.1
    plain = mine_hard_negatives(
        pool.index, pool.embeddings, anchor_positions=pool.anchors, labels=pool.labels
    )
    result = mine_hard_negatives(
        pool.index,
        pool.embeddings,
        anchor_positions=pool.anchors,
        labels=pool.labels,
        margin=margin,
    )
    has_positive = result.positive_positions >= 0
    limit = result.positive_similarities - np.float32(margin)
    sims = result.negative_similarities
    assert np.all(np.isnan(sims[has_positive]) | (sims[has_positive] <= limit[has_positive, None]))
    assert result.dropped["margin"] > 0
    # anchors without a positive (unlabeled, singleton class) are unaffected by the margin
    assert (~has_positive).sum() >= 13
    np.testing.assert_array_equal(
        result.negative_positions[~has_positive], plain.negative_positions[~has_positive]
    )


def test_max_similarity_drops_only_what_it_should(pool: Pool) -> None:
    result = mine_hard_negatives(
        pool.index,
        pool.embeddings,
        anchor_positions=pool.anchors,
        labels=pool.labels,
        max_similarity=0.5,
    )
    sims = result.negative_similarities
    assert np.all(np.isnan(sims) | (sims <= np.float32(0.5)))
    assert result.dropped["max_similarity"] > 0


def test_range_min_skips_the_most_similar_survivors(pool: Pool) -> None:
    wide = mine_hard_negatives(
        pool.index, pool.embeddings, anchor_positions=pool.anchors, labels=pool.labels, k=13
    )
    skipped = mine_hard_negatives(
        pool.index,
        pool.embeddings,
        anchor_positions=pool.anchors,
        labels=pool.labels,
        k=10,
        range_min=3,
    )
    np.testing.assert_array_equal(skipped.negative_positions, wide.negative_positions[:, 3:])
    assert skipped.dropped["range"] == 3 * len(pool.anchors)


def test_random_sampling_stays_in_window_and_is_seeded(pool: Pool) -> None:
    params: dict[str, Any] = {"k": 5, "range_min": 2, "range_max": 20, "margin": 0.05}

    def run(seed: int) -> MinedNegatives:
        return mine_hard_negatives(
            pool.index,
            pool.embeddings,
            anchor_positions=pool.anchors,
            labels=pool.labels,
            sampling="random",
            rng=np.random.default_rng(seed),
            **params,
        )

    first, again, other = run(7), run(7), run(8)
    ref = reference_mine(pool.embeddings, pool.anchors, pool.labels, sampling="random", **params)

    np.testing.assert_array_equal(first.negative_positions, again.negative_positions)
    assert not np.array_equal(first.negative_positions, other.negative_positions)
    assert first.dropped == ref.dropped
    for row, window in enumerate(ref.windows):
        drawn = first.negative_positions[row]
        drawn = drawn[drawn >= 0]
        assert drawn.size == min(5, len(window))
        assert set(drawn.tolist()) <= set(window)
        order = [window.index(p) for p in drawn.tolist()]
        assert order == sorted(order)  # best first
    top = reference_mine(pool.embeddings, pool.anchors, pool.labels, **params).top(5)[0]
    assert not np.array_equal(first.negative_positions, top)  # really random, not the top


def test_random_sampling_default_window(pool: Pool) -> None:
    result = mine_hard_negatives(
        pool.index,
        pool.embeddings,
        anchor_positions=pool.anchors,
        labels=pool.labels,
        k=3,
        sampling="random",
        rng=np.random.default_rng(0),
    )
    ref = reference_mine(pool.embeddings, pool.anchors, pool.labels, k=3, sampling="random")
    assert result.dropped == ref.dropped
    for row, window in enumerate(ref.windows):
        assert len(window) == 30
        drawn = result.negative_positions[row]
        assert set(drawn[drawn >= 0].tolist()) <= set(window)


def test_anchors_without_label(pool: Pool) -> None:
    anchor_labels = pool.labels[pool.anchors].copy()
    anchor_labels[:5] = -1  # labeled items mined as if unlabeled
    unlabeled_rows = np.flatnonzero(pool.labels[pool.anchors] < 0)
    anchor_labels[unlabeled_rows[:3]] = 0  # unlabeled items mined for class 0
    params: dict[str, Any] = {"margin": 0.05, "k": 8}
    result = mine_hard_negatives(
        pool.index,
        pool.embeddings,
        anchor_positions=pool.anchors,
        labels=pool.labels,
        anchor_labels=anchor_labels,
        **params,
    )
    ref = reference_mine(pool.embeddings, pool.anchors, pool.labels, anchor_labels, **params)
    assert_matches_reference(result, ref, 8)
    assert np.all(result.positive_positions[:5] == -1)
    assert np.all(np.isnan(result.positive_similarities[:5]))
    assert np.all(pool.labels[result.positive_positions[unlabeled_rows[:3]]] == 0)


def test_only_unlabeled_anchors_and_no_labels_at_all(pool: Pool) -> None:
    labels = np.full(N_ROWS, -1, dtype=np.int64)
    result = mine_hard_negatives(
        pool.index, pool.embeddings, anchor_positions=pool.anchors[:20], labels=labels, k=5
    )
    ref = reference_mine(pool.embeddings, pool.anchors[:20], labels, k=5)
    assert_matches_reference(result, ref, 5)
    assert result.dropped["same_label"] == 0


def test_positives_match_brute_force(pool: Pool) -> None:
    anchor_labels = pool.labels[pool.anchors]
    positions, similarities = find_positives(
        pool.embeddings,
        anchor_positions=pool.anchors,
        anchor_labels=anchor_labels,
        labels=pool.labels,
    )
    ref = reference_mine(pool.embeddings, pool.anchors, pool.labels)
    np.testing.assert_array_equal(positions, ref.positive_positions)
    np.testing.assert_allclose(similarities, ref.positive_similarities, atol=1e-6)
    singleton = np.flatnonzero(anchor_labels == 4)
    assert singleton.size == 1 and positions[singleton[0]] == -1
    assert np.all(positions[anchor_labels < 0] == -1)
    assert np.all(positions != pool.anchors)


def test_duplicate_anchors_and_empty_anchor_list(pool: Pool) -> None:
    anchors = np.array([pool.anchors[0], pool.anchors[0]], dtype=np.int64)
    result = mine_hard_negatives(
        pool.index, pool.embeddings, anchor_positions=anchors, labels=pool.labels
    )
    np.testing.assert_array_equal(result.negative_positions[0], result.negative_positions[1])
    empty = mine_hard_negatives(
        pool.index,
        pool.embeddings,
        anchor_positions=np.zeros(0, dtype=np.int64),
        labels=pool.labels,
    )
    assert empty.negative_positions.shape == (0, 10)
    assert empty.dropped == dict.fromkeys(DROP_REASONS, 0)
    assert empty.triplets().negative_positions.shape == (0,)


def test_short_anchors_get_one_deeper_search(pool: Pool) -> None:
    depths: list[int] = []

    class SpyIndex(VectorIndex):
        def search(self, queries, k, *, ef_search=None):  # type: ignore[no-untyped-def]
            depths.append(k)
            return super().search(queries, k, ef_search=ef_search)

    spy = SpyIndex(pool.index._index, "flat")
    result = mine_hard_negatives(
        spy,
        pool.embeddings,
        anchor_positions=pool.anchors,
        labels=pool.labels,
        k=3,
        max_similarity=0.1,
    )
    assert len(depths) == 2 and depths[1] > depths[0]
    assert depths[1] == N_ROWS  # this small pool is searched exhaustively on the repeat
    ref = reference_mine(pool.embeddings, pool.anchors, pool.labels, k=3, max_similarity=0.1)
    assert_matches_reference(result, ref, 3)


def test_hnsw_index_gives_the_same_negatives_on_a_small_pool(pool: Pool) -> None:
    hnsw = VectorIndex.build(pool.embeddings, kind="hnsw")
    exact = mine_hard_negatives(
        pool.index, pool.embeddings, anchor_positions=pool.anchors, labels=pool.labels
    )
    approx = mine_hard_negatives(
        hnsw, pool.embeddings, anchor_positions=pool.anchors, labels=pool.labels
    )
    agreement = np.mean(approx.negative_positions == exact.negative_positions)
    assert agreement >= 0.95


def test_triplets_flatten_valid_entries(pool: Pool) -> None:
    result = mine_hard_negatives(
        pool.index,
        pool.embeddings,
        anchor_positions=pool.anchors,
        labels=pool.labels,
        k=4,
        max_similarity=-0.4,  # leaves some anchors short of 4
    )
    triplets = result.triplets()
    anchors, positives, negatives, similarities = triplets
    n_valid = int((result.negative_positions >= 0).sum())
    assert anchors.shape == positives.shape == negatives.shape == similarities.shape == (n_valid,)
    assert n_valid == int(result.n_found.sum()) and n_valid < result.negative_positions.size
    assert negatives.min() >= 0 and not np.isnan(similarities).any()
    row_of = {int(a): i for i, a in enumerate(result.anchor_positions)}
    for a, p, neg, s in zip(
        anchors[:20], positives[:20], negatives[:20], similarities[:20], strict=True
    ):
        row = row_of[int(a)]
        assert p == result.positive_positions[row]
        col = int(np.flatnonzero(result.negative_positions[row] == neg)[0])
        assert s == result.negative_similarities[row, col]
    complete = result.triplets(require_positive=True)
    assert np.all(complete.positive_positions >= 0)
    assert complete.negative_positions.size < n_valid


# --------------------------------------------------------------------------------------------
# Helpers, one by one
# --------------------------------------------------------------------------------------------


def test_filter_reasons_takes_the_first_applicable_filter() -> None:
    positions = np.array([[0, 1, 2, 3, 4, -1]], dtype=np.int64)
    similarities = np.array([[1.0, 0.95, 0.9, 0.8, 0.2, -np.inf]], dtype=np.float32)
    labels = np.array([5, 5, -1, -1, 5], dtype=np.int64)
    reasons = filter_reasons(
        similarities,
        positions,
        anchor_positions=np.array([0]),
        anchor_labels=np.array([5]),
        labels=labels,
        positive_positions=np.array([1]),
        positive_similarities=np.array([0.95], dtype=np.float32),
        margin=0.1,
        max_similarity=0.75,
    )
    # 0 self; 1 same label (also over the margin); 2 margin (0.9 > 0.95 - 0.1, also over
    # max_similarity but counted once); 3 max_similarity (0.8 > 0.75);
    # 4 same label; -1 empty slot
    assert reasons.tolist() == [[SELF, SAME_LABEL, MARGIN, MAX_SIMILARITY, SAME_LABEL, NO_RESULT]]


def test_rank_helpers() -> None:
    reasons = np.array([[SELF, ALIVE, SAME_LABEL, ALIVE, ALIVE, ALIVE, NO_RESULT]], dtype=np.int8)
    assert survivor_ranks(reasons).tolist() == [[-1, 0, -1, 1, 2, 3, -1]]
    assert skip_range_min(reasons, 2).tolist() == [
        [SELF, RANGE, SAME_LABEL, RANGE, ALIVE, ALIVE, NO_RESULT]
    ]
    assert counted_columns(reasons, 2).tolist() == [[True, True, True, True, False, False, False]]
    assert counted_columns(reasons, 9).all()
    counts = count_dropped(skip_range_min(reasons, 2), counted_columns(reasons, 3))
    assert counts.tolist() == [[1, 1, 0, 0, 0, 0, 0, 0, 0, 2]]


def test_select_top_and_random() -> None:
    similarities = np.array([[0.9, 0.8, 0.7, 0.6, 0.5]], dtype=np.float32)
    positions = np.array([[10, 11, 12, 13, 14]], dtype=np.int64)
    window = np.array([[False, True, False, True, True]])
    top_positions, top_sims = select_top(similarities, positions, window, 4)
    assert top_positions.tolist() == [[11, 13, 14, -1]]
    assert np.isnan(top_sims[0, 3]) and top_sims[0, 0] == np.float32(0.8)
    drawn, drawn_sims = select_random(similarities, positions, window, 2, np.random.default_rng(0))
    assert set(drawn[0].tolist()) <= {11, 13, 14} and drawn[0, 0] != drawn[0, 1]
    assert drawn_sims[0, 0] >= drawn_sims[0, 1]
    everything, _ = select_random(similarities, positions, window, 9, np.random.default_rng(0))
    assert everything[0, :3].tolist() == [11, 13, 14] and np.all(everything[0, 3:] == -1)


def test_depth_helpers() -> None:
    assert initial_depth(need=10, same_label_count=0, ntotal=1_000) == 1 + 10 + 16
    assert initial_depth(need=10, same_label_count=50, ntotal=1_000) == 1 + 10 + 16 + 50
    assert initial_depth(need=10, same_label_count=10**6, ntotal=10**7) == 1 + 10 + 16 + 1024
    assert initial_depth(need=10, same_label_count=0, ntotal=5) == 5
    deeper = widened_depth(
        depth=27, need=10, examined=np.array([27, 27]), survived=np.array([2, 9]), ntotal=10**6
    )
    assert deeper == int(np.ceil(1.5 * 10 * 27 / 2))
    assert (
        widened_depth(depth=27, need=10, examined=np.array([27]), survived=np.array([9]), ntotal=50)
        == 50
    )


@pytest.mark.parametrize(
    ("params", "match"),
    [
        ({"k": 0}, "k must"),
        ({"range_min": -1}, "range_min"),
        ({"range_min": 5, "range_max": 5}, "range_max"),
        ({"sampling": "hardest"}, "sampling"),
        ({"margin": float("nan")}, "margin"),
        ({"max_similarity": float("inf")}, "max_similarity"),
        ({"anchor_positions": np.array([0, 200])}, "anchor_positions"),
        ({"anchor_positions": np.array([[0, 1]])}, "1-D"),
        ({"anchor_positions": np.array([0.5])}, "integers"),
        ({"labels": np.zeros(199, dtype=np.int64)}, "length"),
        ({"labels": np.full(200, -2, dtype=np.int64)}, ">= -1"),
        ({"anchor_labels": np.zeros(3, dtype=np.int64)}, "length"),
    ],
)
def test_invalid_arguments_raise_value_error(
    pool: Pool, params: dict[str, Any], match: str
) -> None:
    kwargs: dict[str, Any] = {"anchor_positions": pool.anchors, "labels": pool.labels, **params}
    with pytest.raises(ValueError, match=match):
        mine_hard_negatives(pool.index, pool.embeddings, **kwargs)


def test_embeddings_must_match_the_index(pool: Pool) -> None:
    with pytest.raises(ValueError, match="does not match"):
        mine_hard_negatives(
            pool.index,
            pool.embeddings[:100],
            anchor_positions=pool.anchors[:3],
            labels=pool.labels[:100],
        )
    with pytest.raises(ValueError, match="does not match"):
        mine_hard_negatives(
            pool.index, pool.embeddings[:, :8], anchor_positions=pool.anchors, labels=pool.labels
        )
    bad = pool.embeddings.copy()
    bad[pool.anchors[0]] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        mine_hard_negatives(pool.index, bad, anchor_positions=pool.anchors, labels=pool.labels)


def test_given_positive_pairs_set_the_margin_reference(pool: Pool) -> None:
    """(anchor, positive) pairs as sentence-transformers takes them: the margin compares with
    the pair's similarity (brute force), and the given positive is never mined."""
    rng = np.random.default_rng(5)
    positives = rng.integers(0, N_ROWS, size=pool.anchors.size)
    positives[positives == pool.anchors] = (positives[positives == pool.anchors] + 1) % N_ROWS
    positives[:3] = -1
    no_labels = np.full(N_ROWS, -1, dtype=np.int64)
    result = mine_hard_negatives(
        pool.index,
        pool.embeddings,
        anchor_positions=pool.anchors,
        labels=no_labels,
        positive_positions=positives,
        margin=0.05,
        k=5,
    )
    unit = pool.embeddings / np.linalg.norm(pool.embeddings, axis=1, keepdims=True)
    expected = np.einsum("ij,ij->i", unit[pool.anchors], unit[np.maximum(positives, 0)])
    np.testing.assert_allclose(result.positive_similarities[3:], expected[3:], atol=1e-5)
    assert np.isnan(result.positive_similarities[:3]).all()
    assert not (result.negative_positions == positives[:, None]).any()
    complete = 0
    for row in range(3, pool.anchors.size):
        sims = unit[pool.anchors[row]] @ unit.T
        allowed = sims <= expected[row] - 0.05 + 1e-6
        allowed[[pool.anchors[row], positives[row]]] = False
        want = np.argsort(-np.where(allowed, sims, -np.inf), kind="stable")[:5]
        want = want[allowed[want]]
        got = result.negative_positions[row][result.negative_positions[row] >= 0]
        assert allowed[got].all()
        if got.size == 5:  # an anchor whose few survivors lie deeper than one re-search pads
            assert set(got.tolist()) == set(want.tolist())
            complete += 1
    assert complete > pool.anchors.size // 2
    with pytest.raises(ValueError, match="positive_positions"):
        mine_hard_negatives(
            pool.index,
            pool.embeddings,
            anchor_positions=pool.anchors,
            labels=no_labels,
            positive_positions=positives[:-1],
        )


def test_max_candidates_caps_the_search_at_raw_ranks(pool: Pool) -> None:
    """sentence-transformers' range_max semantics: only the first raw neighbours count, and
    anchors that run out get fewer negatives instead of a deeper search."""
    cap = 12
    capped = mine_hard_negatives(
        pool.index,
        pool.embeddings,
        anchor_positions=pool.anchors,
        labels=pool.labels,
        margin=0.0,
        k=5,
        max_candidates=cap,
    )
    unit = pool.embeddings / np.linalg.norm(pool.embeddings, axis=1, keepdims=True)
    neighbours = np.argsort(-(unit[pool.anchors] @ unit.T), axis=1, kind="stable")[:, :cap]
    for row in range(pool.anchors.size):
        got = capped.negative_positions[row]
        assert np.isin(got[got >= 0], neighbours[row]).all()
    uncapped = mine_hard_negatives(
        pool.index,
        pool.embeddings,
        anchor_positions=pool.anchors,
        labels=pool.labels,
        margin=0.0,
        k=5,
    )
    assert (capped.negative_positions >= 0).sum() < (uncapped.negative_positions >= 0).sum()
    with pytest.raises(ValueError, match="max_candidates"):
        mine_hard_negatives(
            pool.index,
            pool.embeddings,
            anchor_positions=pool.anchors,
            labels=pool.labels,
            max_candidates=0,
        )


def test_a_close_cap_is_searched_in_one_pass(pool: Pool) -> None:
    """With max_candidates within 4x the first depth, anchors that would run short are not
    searched twice: one search at the cap, and the same negatives as the two-pass walk."""
    depths: list[int] = []

    class SpyIndex(VectorIndex):
        def search(self, queries, k, *, ef_search=None):  # type: ignore[no-untyped-def]
            depths.append(k)
            return super().search(queries, k, ef_search=ef_search)

    spy = SpyIndex(pool.index._index, "flat")
    cap = 40
    once = mine_hard_negatives(
        spy,
        pool.embeddings,
        anchor_positions=pool.anchors,
        labels=pool.labels,
        k=3,
        relative_margin=0.05,
        max_candidates=cap,
        exclude_same_label=False,
    )
    assert depths == [cap]
    unit = pool.embeddings / np.linalg.norm(pool.embeddings, axis=1, keepdims=True)
    neighbours = np.argsort(-(unit[pool.anchors] @ unit.T), axis=1, kind="stable")[:, :cap]
    uncapped = mine_hard_negatives(
        pool.index,
        pool.embeddings,
        anchor_positions=pool.anchors,
        labels=pool.labels,
        k=3,
        relative_margin=0.05,
        exclude_same_label=False,
    )
    for row in range(pool.anchors.size):
        got = once.negative_positions[row]
        assert np.isin(got[got >= 0], neighbours[row]).all()
        # within the cap, the capped walk keeps the uncapped one's leading negatives
        inside = uncapped.negative_positions[row]
        inside = inside[(inside >= 0) & np.isin(inside, neighbours[row])]
        np.testing.assert_array_equal(got[: inside.size], inside)
