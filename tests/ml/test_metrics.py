"""Checkpoint metrics against scikit-learn and hand-computed references."""

import numpy as np
import pytest
from sklearn.metrics import accuracy_score, f1_score, log_loss

from app.ml.metrics import (
    classification_report,
    confidence_bins,
    expected_calibration_error,
    macro_f1,
    negative_log_likelihood,
    per_class_f1,
)


def _random_case(seed: int, n: int = 300, c: int = 6) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    logits = rng.normal(size=(n, c)) * 2
    probs = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    y = np.where(rng.random(n) < 0.6, probs.argmax(axis=1), rng.integers(0, c - 1, n))
    return probs, y


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_f1_matches_sklearn(seed: int) -> None:
    probs, y = _random_case(seed)
    pred = probs.argmax(axis=1)
    f1, present = per_class_f1(y, pred, 6)
    np.testing.assert_allclose(
        f1, f1_score(y, pred, average=None, labels=range(6), zero_division=0)
    )
    assert present.all()
    assert macro_f1(y, pred) == pytest.approx(f1_score(y, pred, average="macro", zero_division=0))


def test_macro_f1_ignores_classes_absent_everywhere_like_sklearn() -> None:
    y = np.array([0, 0, 1, 1, 3])
    pred = np.array([0, 1, 1, 1, 0])
    f1, present = per_class_f1(y, pred, 5)
    assert present.tolist() == [True, True, False, True, False]
    assert f1[3] == 0.0  # class 3 is never predicted
    expected = f1_score(y, pred, average="macro", zero_division=0)
    assert macro_f1(y, pred, n_classes=5) == pytest.approx(expected)


def test_ece_hand_computed() -> None:
    probs = np.array([[0.3, 0.7], [0.6, 0.4], [0.9, 0.1], [0.2, 0.8]])
    y = np.array([1, 1, 0, 0])
    # top confidences: 0.7, 0.6, 0.9, 0.8 -> all in bin (0.5, 1]; correct: T, F, T, F
    # acc = 0.5, mean conf = 0.75 -> ECE = |0.5 - 0.75| = 0.25
    assert expected_calibration_error(probs, y, n_bins=2) == pytest.approx(0.25)
    # 10 bins: (0.6,0.7]: {0.7 T}, (0.5,0.6]: {0.6 F}, (0.8,0.9]: {0.9 T}, (0.7,0.8]: {0.8 F}
    # ECE = 1/4 (|1-.7| + |0-.6| + |1-.9| + |0-.8|) = 1/4 * 1.8 = 0.45
    assert expected_calibration_error(probs, y, n_bins=10) == pytest.approx(0.45)


def test_ece_bin_edges_are_right_closed() -> None:
    stats = confidence_bins(np.array([0.0, 0.5, 0.5000001, 1.0]), np.array([1, 0, 1, 1]), n_bins=2)
    assert stats["counts"].tolist() == [2, 2]
    assert stats["accuracy"].tolist() == [0.5, 1.0]


def test_ece_zero_for_perfectly_calibrated_bins() -> None:
    # 10 rows at confidence 0.8 of which 8 are right: calibrated
    probs = np.tile([0.8, 0.2], (10, 1))
    y = np.array([0] * 8 + [1] * 2)
    assert expected_calibration_error(probs, y) == pytest.approx(0.0, abs=1e-12)


def test_multilabel_report_matches_sklearn() -> None:
    rng = np.random.default_rng(3)
    probs = rng.random((80, 4))
    y = (rng.random((80, 4)) < 0.4).astype(int)
    y[:, 3] = 0  # a label never true
    report = classification_report(y, probs, label_names=list("abcd"), task="multilabel")
    pred = (probs >= 0.5).astype(int)
    assert report["accuracy"] == pytest.approx(accuracy_score(y, pred))
    assert report["macro_f1"] == pytest.approx(f1_score(y, pred, average="macro", zero_division=0))
    # every (row, label) pair is one binary decision
    conf = np.maximum(probs, 1 - probs).ravel()
    correct = ((probs >= 0.5) == (y == 1)).ravel()
    stats = confidence_bins(conf, correct, 15)
    manual = np.sum(stats["counts"] / conf.size * np.abs(stats["accuracy"] - stats["confidence"]))
    assert report["ece"] == pytest.approx(manual)


def test_report_single_label() -> None:
    probs, y = _random_case(4, c=3)
    names = ["x", "y", "z"]
    report = classification_report(y, probs, label_names=names, task="multiclass")
    pred = probs.argmax(axis=1)
    assert report["accuracy"] == pytest.approx(accuracy_score(y, pred))
    assert report["macro_f1"] == pytest.approx(f1_score(y, pred, average="macro"))
    assert list(report["per_class_f1"]) == names
    assert report["nll"] == pytest.approx(log_loss(y, probs, labels=[0, 1, 2]))
    assert report["n"] == len(y)
    assert negative_log_likelihood(probs, y) == pytest.approx(report["nll"])


def test_report_marks_absent_class_none() -> None:
    probs = np.array([[0.9, 0.1, 0.0], [0.2, 0.8, 0.0]])
    report = classification_report(
        np.array([0, 1]), probs, label_names=["a", "b", "c"], task="multiclass"
    )
    assert report["per_class_f1"] == {"a": 1.0, "b": 1.0, "c": None}
    assert report["macro_f1"] == 1.0


@pytest.mark.parametrize(
    ("y", "pred", "n"),
    [
        (np.array([0, 1]), np.array([0]), 2),
        (np.array([0, 2]), np.array([0, 1]), 2),
        (np.array([-1]), np.array([0]), 2),
    ],
)
def test_bad_labels_raise(y: np.ndarray, pred: np.ndarray, n: int) -> None:
    with pytest.raises(ValueError):
        per_class_f1(y, pred, n)


def test_bad_probs_raise() -> None:
    with pytest.raises(ValueError, match="finite"):
        expected_calibration_error(np.array([[np.nan, 1.0]]), np.array([0]))
    with pytest.raises(ValueError, match="2-D"):
        expected_calibration_error(np.array([0.5, 0.5]), np.array([0]))


def test_wilson_interval_reference() -> None:
    from app.ml.metrics import wilson_interval

    # statsmodels.stats.proportion.proportion_confint(8, 10, method="wilson")
    low, high = wilson_interval(8, 10)
    assert (low, high) == (pytest.approx(0.4901625, abs=1e-6), pytest.approx(0.9433178, abs=1e-6))
    low, high = wilson_interval(0, 5)
    assert low == 0.0 and high == pytest.approx(0.4344825, abs=1e-6)
    assert wilson_interval(0, 0) is None
    with pytest.raises(ValueError):
        wilson_interval(3, 2)
