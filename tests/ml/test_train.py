import dataclasses
import json
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest

from app.ml.predict import predict_proba
from app.ml.train import TrainConfig, TrainResult, fit_self_training, fit_supervised

FAST = TrainConfig(hidden=32, epochs=40, min_steps=200, batch_size=64)
METRIC_KEYS = {
    "accuracy",
    "macro_f1",
    "validation",
    "n_labeled",
    "n_train",
    "n_validation",
    "cv_folds",
    "n_unlabeled",
    "n_pseudo",
    "pseudo_per_class",
    "rounds",
    "task",
    "n_classes",
    "seconds",
}


@pytest.fixture(autouse=True, scope="module")
def _one_torch_thread() -> Iterator[None]:
    """Tiny nets train several times faster on one thread (and don't fight parallel jobs)."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _blobs(
    n: int, n_classes: int = 3, dim: int = 8, spread: float = 1.0, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    centers = np.random.default_rng(0).normal(size=(n_classes, dim)) * 4.0
    y = rng.integers(0, n_classes, size=n).astype(np.int64)
    x = (centers[y] + spread * rng.normal(size=(n, dim))).astype(np.float32)
    return x, y


def _self_train(
    x_l: np.ndarray,
    y_l: np.ndarray,
    x_u: np.ndarray,
    config: TrainConfig = FAST,
    seed: int = 0,
    **kw: Any,
) -> TrainResult:
    return fit_self_training(x_l, y_l, x_u, config=config, seed=seed, device="cpu", **kw)


def test_learns_separable_blobs() -> None:
    x, y = _blobs(600)
    result = _self_train(x[:60], y[:60], x[60:400])
    test_probs = predict_proba(result.net, x[400:])
    assert (test_probs.argmax(axis=1) == y[400:]).mean() > 0.9
    assert result.metrics["validation"] == "holdout"
    assert result.metrics["accuracy"] > 0.9
    assert set(result.metrics) >= METRIC_KEYS
    json.dumps(result.metrics, allow_nan=False)  # storable as a JSON column / meta.json


def test_same_seed_gives_identical_probs_and_other_seed_differs() -> None:
    x, y = _blobs(300, spread=2.0)
    probs = [
        predict_proba(_self_train(x[:40], y[:40], x[40:200], seed=s).net, x[200:])
        for s in (3, 3, 4)
    ]
    assert np.array_equal(probs[0], probs[1])
    assert not np.array_equal(probs[0], probs[2])


def test_fit_supervised_does_not_touch_global_torch_rng() -> None:
    import torch

    x, y = _blobs(50)
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    fit_supervised(x, y, config=FAST, seed=0, device="cpu")
    assert torch.equal(torch.rand(3), expected)


def test_pseudo_labels_index_unlabeled_rows_and_respect_threshold() -> None:
    x, y = _blobs(500, spread=2.5)
    x_u = x[50:]
    config = dataclasses.replace(FAST, pseudo_label_threshold=0.9, pseudo_rounds=2)
    result = _self_train(x[:50], y[:50], x_u, config=config)
    p = result.pseudo_positions
    assert p.dtype == np.int64 and result.pseudo_labels.dtype == np.int64
    assert result.pseudo_confidences.dtype == np.float32
    assert p.size > 0
    assert np.all((p >= 0) & (p < x_u.shape[0]))  # positions into x_unlabeled, never labeled rows
    assert np.unique(p).size == p.size
    assert np.all(result.pseudo_confidences >= 0.9)
    assert (result.pseudo_labels == y[50:][p]).mean() > 0.9
    assert result.metrics["n_pseudo"] == p.size == sum(result.metrics["pseudo_per_class"])
    assert [r["round"] for r in result.metrics["rounds"]][:2] == [0, 1]


def test_max_pseudo_per_class_is_respected() -> None:
    x, y = _blobs(500)
    config = dataclasses.replace(FAST, pseudo_label_threshold=0.6, max_pseudo_per_class=5)
    result = _self_train(x[:60], y[:60], x[60:], config=config)
    assert np.bincount(result.pseudo_labels, minlength=3).max() <= 5
    assert result.metrics["n_pseudo"] == result.pseudo_positions.size > 0


@pytest.mark.parametrize("change", [{"pseudo_label_threshold": 1.0}, {"pseudo_rounds": 0}])
def test_no_pseudo_labels_when_switched_off(change: dict[str, Any]) -> None:
    x, y = _blobs(200)
    result = _self_train(x[:40], y[:40], x[40:], config=dataclasses.replace(FAST, **change))
    assert result.pseudo_positions.size == 0 and result.metrics["n_pseudo"] == 0


def test_no_pseudo_labels_without_unlabeled_rows() -> None:
    x, y = _blobs(60)
    result = _self_train(x, y, np.zeros((0, 8), dtype=np.float32))
    assert result.pseudo_positions.size == 0
    assert result.metrics["n_unlabeled"] == 0


def test_tiny_label_set_uses_cross_validation() -> None:
    x, y = _blobs(200)
    labeled = np.concatenate([np.flatnonzero(y == c)[:4] for c in range(3)])  # 12 rows < 20
    result = _self_train(x[labeled], y[labeled], x[100:])
    m = result.metrics
    assert m["validation"] == "cv"
    assert m["cv_folds"] == 4  # min(5, smallest class count)
    assert m["n_validation"] == 12
    assert 0.0 <= m["accuracy"] <= 1.0


def test_singleton_class_falls_back_to_train_metrics() -> None:
    x, y = _blobs(200)
    labeled = np.concatenate([np.flatnonzero(y == 0)[:5], np.flatnonzero(y == 1)[:1]])
    result = _self_train(x[labeled], y[labeled], x[100:])
    assert result.metrics["validation"] == "train"
    assert result.metrics["cv_folds"] == 0


def test_singleton_class_does_not_break_holdout_split() -> None:
    x, y = _blobs(300)
    sizes = {0: 20, 1: 15, 2: 1}  # exactly one example of class 2
    labeled = np.concatenate([np.flatnonzero(y == c)[:n] for c, n in sizes.items()])
    result = _self_train(x[labeled], y[labeled], x[100:])
    assert result.metrics["validation"] == "holdout"
    assert result.metrics["n_validation"] == 4 + 3  # round(0.2 * 20) + round(0.2 * 15)


def test_n_classes_beyond_seen_labels() -> None:
    x, y = _blobs(100)
    result = _self_train(x[:40], y[:40], x[40:], n_classes=5)
    assert predict_proba(result.net, x[:3]).shape == (3, 5)
    assert len(result.metrics["pseudo_per_class"]) == 5


def test_binary_task() -> None:
    x, y = _blobs(300, n_classes=2)
    config = dataclasses.replace(FAST, task="binary")
    result = _self_train(x[:50], y[:50], x[50:], config=config)
    assert predict_proba(result.net, x[:4]).shape == (4, 2)
    assert result.metrics["accuracy"] > 0.9


def test_multilabel_trains_and_skips_pseudo_labels() -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(400, 6)).astype(np.float32)
    y = np.stack([x[:, 0] > 0, x[:, 1] > 0, x[:, 0] + x[:, 1] > 0], axis=1).astype(np.float32)
    config = dataclasses.replace(FAST, task="multilabel", pseudo_label_threshold=0.6)
    result = _self_train(x[:200], y[:200], x[200:300], config=config)
    assert result.pseudo_positions.size == 0 and result.metrics["n_pseudo"] == 0
    probs = predict_proba(result.net, x[300:])
    assert probs.shape == (100, 3)
    assert np.all((probs >= 0) & (probs <= 1))
    assert not np.allclose(probs.sum(axis=1), 1.0)  # independent sigmoids
    assert ((probs >= 0.5) == y[300:].astype(bool)).mean() > 0.85
    assert result.metrics["task"] == "multilabel" and result.metrics["validation"] == "holdout"


def test_progress_goes_from_zero_to_one() -> None:
    x, y = _blobs(120)
    seen: list[float] = []
    _self_train(x[:40], y[:40], x[40:], on_progress=lambda p, msg: seen.append(p))
    assert seen[0] == 0.0 and seen[-1] == 1.0
    assert all(0.0 <= p <= 1.0 for p in seen)
    assert seen == sorted(seen)


def test_sample_weight_and_on_epoch() -> None:
    x, y = _blobs(80)
    losses: list[float] = []
    net = fit_supervised(
        x,
        y,
        config=FAST,
        seed=0,
        device="cpu",
        sample_weight=np.linspace(0.1, 1.0, 80),
        on_epoch=lambda epoch, n_epochs, loss: losses.append(loss),
    )
    assert len(losses) == FAST.epochs_for(80) == 100  # 2 steps per epoch, min_steps 200
    assert losses[-1] < losses[0]
    assert not net.training


def test_max_steps_caps_the_epochs_of_large_fits_only() -> None:
    config = TrainConfig(epochs=100, min_steps=300, max_steps=1000, batch_size=256)
    assert config.epochs_for(1925) == 100  # 8 steps per epoch: 800 steps, under the cap
    assert config.epochs_for(8000) == 31  # 32 steps per epoch: 3200 steps capped to 992
    assert config.epochs_for(500_000) == 1  # one epoch even when it alone exceeds the cap
    assert TrainConfig(max_steps=None).epochs_for(8000) == 100
    x, y = _blobs(80)
    losses: list[float] = []
    capped = dataclasses.replace(FAST, max_steps=50)  # 2 steps per epoch: 25 epochs instead of 100
    fit_supervised(x, y, config=capped, seed=0, device="cpu",
                   on_epoch=lambda epoch, n_epochs, loss: losses.append(loss))
    assert len(losses) == 25


@pytest.mark.parametrize(
    "change",
    [
        {"epochs": 0},
        {"dropout": 1.0},
        {"task": "regression"},
        {"validation_fraction": 1.0},
        {"max_steps": 0},
    ],
)
def test_config_validation(change: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        TrainConfig(**change)  # type: ignore[arg-type]


def test_input_validation() -> None:
    x, y = _blobs(30)
    with pytest.raises(ValueError, match="x_unlabeled"):
        _self_train(x, y, np.zeros((5, 3), dtype=np.float32))
    with pytest.raises(ValueError, match=r"\[0, 2\)"):
        fit_supervised(x, y, config=FAST, seed=0, device="cpu", n_classes=2)
    bad = x.copy()
    bad[7, 1] = np.nan
    with pytest.raises(ValueError, match="row 7"):
        fit_supervised(bad, y, config=FAST, seed=0, device="cpu")
    with pytest.raises(ValueError, match="sample_weight"):
        fit_supervised(x, y, config=FAST, seed=0, device="cpu", sample_weight=-np.ones(30))
