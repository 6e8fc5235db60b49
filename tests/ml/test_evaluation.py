"""Validation plans, out-of-fold probabilities and cross-fitted calibration."""

import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression

from app.ml.evaluation import calibrate_and_score, cross_validated_probs, plan_validation
from app.ml.metrics import expected_calibration_error
from app.sampling.splits import hashed_holdout


def test_holdout_when_enough_items_hash_out() -> None:
    ids = np.arange(1000, 1400)
    y = np.arange(400) % 4
    plan = plan_validation(ids, y, task="multiclass", fraction=0.2, min_holdout=50)
    assert plan.mode == "holdout" and plan.cv_folds == 0
    assert np.array_equal(plan.holdout, hashed_holdout(ids, fraction=0.2))
    assert np.array_equal(
        np.sort(np.concatenate([plan.train_rows, plan.holdout_rows])), np.arange(400)
    )
    # an item keeps its side when more labels arrive
    more = plan_validation(
        np.arange(1000, 1800), np.arange(800) % 4, task="multiclass", fraction=0.2, min_holdout=50
    )
    assert np.array_equal(more.holdout[:400], plan.holdout)
    assert plan.split == more.split


def test_cv_when_few_labels_and_train_when_a_singleton() -> None:
    y = np.array([0, 0, 0, 1, 1, 1, 2, 2, 2, 2])
    plan = plan_validation(np.arange(10), y, task="multiclass", fraction=0.2, min_holdout=50)
    assert plan.mode == "cv" and plan.cv_folds == 3 and not plan.holdout.any()
    with_singleton = plan_validation(
        np.arange(7),
        np.array([0, 0, 0, 1, 1, 1, 2]),
        task="multiclass",
        fraction=0.2,
        min_holdout=50,
    )
    assert with_singleton.mode == "cv" and with_singleton.cv_folds == 3
    single = plan_validation(
        np.arange(2), np.array([0, 1]), task="binary", fraction=0.2, min_holdout=50
    )
    assert single.mode == "train" and single.train_rows.size == 2
    one_class = plan_validation(
        np.arange(4), np.array([1, 1, 1, 1]), task="binary", fraction=0.2, min_holdout=50
    )
    assert one_class.mode == "train"


def test_out_of_fold_probs_match_a_manual_loop() -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(60, 4))
    y = (x[:, 0] + 0.3 * rng.normal(size=60) > 0).astype(int)
    seen: list[np.ndarray] = []

    def fit_predict(tr: np.ndarray, va: np.ndarray) -> np.ndarray:
        assert not set(tr) & set(va)
        seen.append(va)
        return LogisticRegression().fit(x[tr], y[tr]).predict_proba(x[va])

    oof = cross_validated_probs(y, fit_predict, task="binary", n_classes=2, n_folds=4, seed=1)
    assert len(seen) == 4 and np.array_equal(np.sort(np.concatenate(seen)), np.arange(60))
    from sklearn.model_selection import StratifiedKFold, cross_val_predict

    ref = cross_val_predict(
        LogisticRegression(),
        x,
        y,
        method="predict_proba",
        cv=StratifiedKFold(4, shuffle=True, random_state=1),
    )
    np.testing.assert_allclose(oof, ref, atol=1e-6)
    with pytest.raises(ValueError):
        cross_validated_probs(y, fit_predict, task="binary", n_classes=3, n_folds=4, seed=1)


def test_calibrate_and_score_improves_ece_on_overconfident_probs() -> None:
    rng = np.random.default_rng(2)
    z = rng.normal(size=(3000, 4)) * 1.5
    p_true = np.exp(z) / np.exp(z).sum(axis=1, keepdims=True)
    y = (p_true.cumsum(axis=1) < rng.random((3000, 1))).sum(axis=1)
    over = np.exp(3 * z) / np.exp(3 * z).sum(axis=1, keepdims=True)
    t, report = calibrate_and_score(over, y, label_names=list("abcd"), task="multiclass")
    assert t == pytest.approx(3.0, rel=0.15) and report["calibration"] == "temperature"
    assert report["ece"] < report["ece_uncalibrated"] / 2
    assert report["ece_uncalibrated"] == pytest.approx(expected_calibration_error(over, y))
    assert report["accuracy"] == pytest.approx(np.mean(over.argmax(1) == y))
    assert report["temperature"] == t and set(report["per_class_f1"]) == set("abcd")
    t1, in_sample = calibrate_and_score(
        over, y, label_names=list("abcd"), task="multiclass", fit=False
    )
    assert t1 == 1.0 and in_sample["ece"] == pytest.approx(in_sample["ece_uncalibrated"])


def test_a_temperature_that_does_not_generalize_is_rejected() -> None:
    # 7 confident right answers and one confident wrong one: the folds without the wrong row
    # fit T at its lower bound, which makes the wrong row's cross-fitted NLL explode
    probs = np.array([[0.9, 0.1]] * 8)
    y = np.array([0] * 7 + [1])
    t, report = calibrate_and_score(probs, y, label_names=["a", "b"], task="binary")
    assert t == 1.0 and report["calibration"] == "rejected"
    assert report["ece"] == pytest.approx(report["ece_uncalibrated"])
    assert report["nll"] == pytest.approx(report["nll_uncalibrated"])
    t_small, small = calibrate_and_score(probs[:3], y[:3], label_names=["a", "b"], task="binary")
    assert t_small == 1.0 and small["calibration"] == "none"


def test_cv_scores_a_singleton_class_row_too() -> None:
    y = np.array([0, 0, 0, 1, 1, 1, 2])
    seen: list[int] = []

    def fit_predict(tr: np.ndarray, va: np.ndarray) -> np.ndarray:
        seen.extend(va.tolist())
        return np.full((va.size, 3), 1 / 3)

    oof = cross_validated_probs(y, fit_predict, task="multiclass", n_classes=3, n_folds=3, seed=0)
    assert sorted(seen) == list(range(7)) and oof.shape == (7, 3)
