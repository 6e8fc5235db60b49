"""Hash-based hold-out membership: deterministic per item id, against a pure-Python splitmix64."""

import numpy as np
import pytest

from app.sampling.splits import hashed_holdout

MASK = (1 << 64) - 1


def _splitmix64(x: int) -> int:
    z = (x + 0x9E3779B97F4A7C15) & MASK
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & MASK
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & MASK
    return z ^ (z >> 31)


def test_reference_values() -> None:
    assert _splitmix64(0) == 0xE220A8397B1DCDAF  # first output of splitmix64 seeded with 0
    ids = np.array([0, 1, 2, 17, 123456789, 2**40 + 3, -5], dtype=np.int64)
    for salt in (0, 99):
        expected = [((_splitmix64((i & MASK) ^ salt) >> 11) / 2**53) < 0.3 for i in ids.tolist()]
        assert hashed_holdout(ids, fraction=0.3, salt=salt).tolist() == expected


def test_membership_is_a_function_of_the_id_only() -> None:
    ids = np.arange(1, 5001, dtype=np.int64)
    full = hashed_holdout(ids, fraction=0.2)
    subset = np.random.default_rng(0).choice(ids, 700, replace=False)
    assert np.array_equal(hashed_holdout(subset, fraction=0.2), full[subset - 1])
    assert full.mean() == pytest.approx(0.2, abs=0.02)
    assert not np.array_equal(hashed_holdout(ids, fraction=0.2, salt=1), full)
    assert not hashed_holdout(ids, fraction=0.0).any() and hashed_holdout(ids, fraction=1.0).all()


def test_bad_input() -> None:
    with pytest.raises(ValueError):
        hashed_holdout(np.array([1.5]), fraction=0.2)
    with pytest.raises(ValueError):
        hashed_holdout(np.array([1]), fraction=1.5)
