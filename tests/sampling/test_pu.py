"""PU reliable negatives against a brute-force numpy reference, and on real digits."""

import numpy as np
import pytest
from sklearn.datasets import load_digits

from app.sampling.pu import PU_DROP_REASONS, rocchio_prototypes, select_pu_negatives


def _unit(x: np.ndarray) -> np.ndarray:
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def _data(n: int = 300, dim: int = 6, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(3, dim)) * 3
    y = rng.integers(0, 3, size=n)
    return (centres[y] + rng.normal(size=(n, dim))).astype(np.float32), y


def _reference(x, positives, candidates, margin):
    """Nearest labeled positive of each candidate and the margin rule, by brute force."""
    xn = _unit(x.astype(np.float64))
    pos = xn[positives]
    sims = xn[candidates] @ pos.T
    nearest, nearest_sim = sims.argmax(1), sims.max(1)
    pp = pos @ pos.T
    np.fill_diagonal(pp, -np.inf)
    reference = pp.max(1)
    return candidates[nearest_sim <= reference[nearest] - margin + 1e-6], nearest_sim


def test_margin_filter_matches_brute_force() -> None:
    x, y = _data()
    positives = np.flatnonzero(y == 0)[:15]
    mask = np.ones(len(y), dtype=bool)
    mask[positives] = False
    for margin in (0.0, 0.05):
        found = select_pu_negatives(
            x, positives, mask, rng=np.random.default_rng(0), max_negatives=10_000, margin=margin
        )
        expected, _ = _reference(x, positives, np.flatnonzero(mask), margin)
        got, want = set(found.positions.tolist()), set(expected.tolist())
        assert got <= want and len(want - got) <= 1  # float32 vs float64 at the boundary
        assert found.n_candidates == mask.sum()
        assert found.n_eligible + sum(found.dropped.values()) == found.n_candidates
        assert set(found.dropped) == set(PU_DROP_REASONS)
        assert found.dropped["margin"] > 0


def test_filters_in_order_and_counted() -> None:
    x, y = _data(seed=1)
    positives = np.flatnonzero(y == 1)[:10]
    mask = np.ones(len(y), dtype=bool)
    mask[:20] = False  # labeled items of any class are never candidates
    probs = np.where(y == 1, 0.9, 0.1).astype(np.float32)
    found = select_pu_negatives(
        x,
        positives,
        mask,
        rng=np.random.default_rng(0),
        margin=None,
        max_similarity=0.5,
        rocchio=True,
        probs=probs,
        max_predicted_probability=0.5,
    )
    xn = _unit(x.astype(np.float64))
    candidates = np.flatnonzero(mask & ~np.isin(np.arange(len(y)), positives))
    c_pos, c_unl = rocchio_prototypes(
        xn[positives].astype(np.float32), xn[candidates].mean(0).astype(np.float32)
    )
    gap = xn[candidates] @ (_unit(c_pos[None])[0] - _unit(c_unl[None])[0])
    nearest = (xn[candidates] @ xn[positives].T).max(1)
    rocchio = gap >= 0
    ceiling = ~rocchio & (nearest > 0.5)
    predicted = ~rocchio & ~ceiling & (probs[candidates] > 0.5)
    assert found.dropped["rocchio"] == rocchio.sum()
    assert abs(found.dropped["max_similarity"] - ceiling.sum()) <= 1
    assert abs(found.dropped["predicted"] - predicted.sum()) <= 1
    assert found.dropped["margin"] == 0
    assert not np.isin(found.positions, positives).any() and mask[found.positions].all()
    assert (probs[found.positions] <= 0.5).all()


def test_sampling_is_seeded_and_bounded() -> None:
    x, y = _data()
    positives = np.flatnonzero(y == 2)[:5]
    mask = np.ones(len(y), dtype=bool)
    first = select_pu_negatives(x, positives, mask, rng=np.random.default_rng(3), max_negatives=40)
    again = select_pu_negatives(x, positives, mask, rng=np.random.default_rng(3), max_negatives=40)
    other = select_pu_negatives(x, positives, mask, rng=np.random.default_rng(4), max_negatives=40)
    assert len(first) == 40 < first.n_eligible
    assert np.array_equal(first.positions, again.positions)
    assert not np.array_equal(first.positions, other.positions)
    assert np.all(np.diff(first.positions) > 0)


def test_single_positive_has_no_margin_reference() -> None:
    x, _ = _data()
    found = select_pu_negatives(x, [0], np.ones(len(x), bool), rng=np.random.default_rng(0))
    assert found.dropped["margin"] == 0 and len(found) == len(x) - 1


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"positive_positions": []}, "at least one"),
        ({"positive_positions": [10_000]}, "positive_positions"),
        ({"candidate_mask": np.ones(3, bool)}, "candidate_mask"),
        ({"max_negatives": 0}, "max_negatives"),
        ({"probs": np.ones(3)}, "probs"),
    ],
)
def test_input_errors(kwargs, match) -> None:
    x, _ = _data(n=50)
    args = {"positive_positions": [0, 1], "candidate_mask": np.ones(50, bool), **kwargs}
    with pytest.raises(ValueError, match=match):
        select_pu_negatives(x, rng=np.random.default_rng(0), **args)


def test_digits_false_negative_rate_falls_below_the_pool_rate() -> None:
    """Real data: 20 labeled 3s among sklearn's 1,797 digits; the margin control removes
    more than a third of the hidden 3s from the negatives while keeping 90 % of the pool."""
    digits = load_digits()
    x, y = digits.data.astype(np.float32), digits.target
    positives = np.random.default_rng(0).choice(np.flatnonzero(y == 3), 20, replace=False)
    mask = np.ones(len(y), dtype=bool)
    mask[positives] = False
    found = select_pu_negatives(x, positives, mask, rng=np.random.default_rng(0))
    pool_rate = (y[mask] == 3).mean()
    assert (y[found.positions] == 3).mean() < 0.65 * pool_rate
    assert len(found) > 0.9 * mask.sum()
