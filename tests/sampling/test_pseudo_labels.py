import numpy as np
import pytest

from app.sampling.pseudo_labels import PseudoLabels, select_pseudo_labels


def _probs(m: int = 300, c: int = 4, sharpness: float = 6.0) -> np.ndarray:
    logits = np.random.default_rng(0).normal(size=(m, c)) * sharpness
    e = np.exp(logits - logits.max(axis=1, keepdims=True))
    return (e / e.sum(axis=1, keepdims=True)).astype(np.float32)


def _reference(probs: np.ndarray, threshold: float, max_per_class: int | None) -> list[int]:
    """Brute-force: per class, rows over the threshold sorted by (-confidence, position)."""
    chosen: list[int] = []
    for c in range(probs.shape[1]):
        rows = [
            i for i in range(probs.shape[0]) if probs[i].argmax() == c and probs[i, c] >= threshold
        ]
        rows.sort(key=lambda i: (-probs[i, c], i))
        chosen.extend(rows if max_per_class is None else rows[:max_per_class])
    return sorted(chosen)


@pytest.mark.parametrize("threshold", [0.5, 0.9, 0.99])
@pytest.mark.parametrize("max_per_class", [None, 0, 1, 7])
def test_matches_brute_force(threshold: float, max_per_class: int | None) -> None:
    probs = _probs()
    got = select_pseudo_labels(probs, threshold=threshold, max_per_class=max_per_class)
    assert got.positions.tolist() == _reference(probs, threshold, max_per_class)
    assert got.positions.dtype == np.int64
    assert got.labels.dtype == np.int64
    assert got.confidences.dtype == np.float32
    assert np.array_equal(got.labels, probs[got.positions].argmax(axis=1))
    assert np.all(got.confidences >= threshold)
    assert np.allclose(got.confidences, probs[got.positions].max(axis=1))


def test_max_per_class_keeps_most_confident_with_position_tiebreak() -> None:
    probs = np.array(
        [[0.97, 0.03], [0.99, 0.01], [0.97, 0.03], [0.02, 0.98], [0.5, 0.5]], dtype=np.float32
    )
    got = select_pseudo_labels(probs, threshold=0.95, max_per_class=2)
    assert got.positions.tolist() == [0, 1, 3]  # row 2 ties with row 0 and loses on position
    assert got.per_class(2).tolist() == [2, 1]
    assert len(got) == 3


def test_threshold_one_keeps_only_certain_rows() -> None:
    probs = np.array([[1.0, 0.0], [0.999, 0.001]], dtype=np.float32)
    assert select_pseudo_labels(probs, threshold=1.0).positions.tolist() == [0]


def test_empty_probs() -> None:
    got = select_pseudo_labels(np.zeros((0, 3), dtype=np.float32), threshold=0.9)
    assert len(got) == 0 and got.positions.dtype == np.int64
    assert len(PseudoLabels.empty()) == 0


@pytest.mark.parametrize("threshold", [0.0, -0.5, 1.01])
def test_rejects_threshold_outside_unit_interval(threshold: float) -> None:
    with pytest.raises(ValueError, match="threshold"):
        select_pseudo_labels(_probs(), threshold=threshold)


def test_rejects_bad_probs_and_cap() -> None:
    with pytest.raises(ValueError, match="2-D"):
        select_pseudo_labels(np.ones(3, dtype=np.float32), threshold=0.5)
    with pytest.raises(ValueError, match="finite"):
        select_pseudo_labels(np.array([[np.nan, 1.0]], dtype=np.float32), threshold=0.5)
    with pytest.raises(ValueError, match="max_per_class"):
        select_pseudo_labels(_probs(), threshold=0.5, max_per_class=-1)
