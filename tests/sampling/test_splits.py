import numpy as np
import pytest

from app.sampling.splits import stratified_split


def _labels() -> np.ndarray:
    # class sizes 10, 5, 2, 1 and a gap (class 4 absent) plus class 5 with 7 rows
    sizes = {0: 10, 1: 5, 2: 2, 3: 1, 5: 7}
    y = np.concatenate([np.full(n, c) for c, n in sizes.items()]).astype(np.int64)
    return np.random.default_rng(0).permutation(y)


def test_partition_and_per_class_counts() -> None:
    y = _labels()
    train_idx, val_idx = stratified_split(y, fraction=0.2, rng=np.random.default_rng(0))
    assert train_idx.dtype == np.int64 and val_idx.dtype == np.int64
    assert np.intersect1d(train_idx, val_idx).size == 0
    assert np.array_equal(np.sort(np.concatenate([train_idx, val_idx])), np.arange(y.size))
    assert np.all(np.diff(train_idx) > 0) and np.all(np.diff(val_idx) > 0)
    for c in np.unique(y):
        count = int((y == c).sum())
        expected_val = min(round(0.2 * count), count - 1)
        assert int((y[val_idx] == c).sum()) == expected_val
        assert int((y[train_idx] == c).sum()) >= 1


def test_singletons_stay_in_train_even_with_large_fraction() -> None:
    y = np.array([0, 1, 1, 2, 2, 2], dtype=np.int64)
    train_idx, val_idx = stratified_split(y, fraction=0.9, rng=np.random.default_rng(1))
    assert 0 in train_idx
    assert set(np.unique(y[train_idx])) == {0, 1, 2}
    assert int((y[val_idx] == 2).sum()) == 2  # round(2.7) = 3, capped at count - 1


def test_reproducible_under_seed_and_varies_with_it() -> None:
    y = np.repeat(np.arange(4), 25).astype(np.int64)
    a = stratified_split(y, fraction=0.3, rng=np.random.default_rng(7))
    b = stratified_split(y, fraction=0.3, rng=np.random.default_rng(7))
    c = stratified_split(y, fraction=0.3, rng=np.random.default_rng(8))
    assert np.array_equal(a[1], b[1])
    assert not np.array_equal(a[1], c[1])


def test_zero_fraction_and_empty() -> None:
    y = np.array([0, 0, 1], dtype=np.int64)
    train_idx, val_idx = stratified_split(y, fraction=0.0, rng=np.random.default_rng(0))
    assert val_idx.size == 0 and train_idx.tolist() == [0, 1, 2]
    empty_train, empty_val = stratified_split(
        np.zeros(0, dtype=np.int64), fraction=0.5, rng=np.random.default_rng(0)
    )
    assert empty_train.size == 0 and empty_val.size == 0


@pytest.mark.parametrize(
    ("y", "fraction"),
    [
        (np.array([0, 1]), 1.0),
        (np.array([0, 1]), -0.1),
        (np.array([[0, 1]]), 0.2),
        (np.array([0.0, 1.0]), 0.2),
        (np.array([0, -1]), 0.2),
    ],
)
def test_rejects_bad_input(y: np.ndarray, fraction: float) -> None:
    with pytest.raises(ValueError):
        stratified_split(y, fraction=fraction, rng=np.random.default_rng(0))
