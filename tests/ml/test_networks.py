"""SmallCNNNet (shapes, standardization, checkpoints, training on real digits), the net factory,
and early stopping."""

import dataclasses
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch

from app.ml.artifacts import load_net, save_checkpoint
from app.ml.networks import MLPHeadNet, SmallCNNNet
from app.ml.predict import embed, mc_dropout_proba, predict_proba
from app.ml.train import (
    TrainConfig,
    can_early_stop,
    fit_self_training,
    fit_supervised,
    fit_supervised_with_info,
    image_side,
    make_net,
)


@pytest.fixture(autouse=True, scope="module")
def _one_torch_thread() -> Iterator[None]:
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _digits() -> tuple[np.ndarray, np.ndarray]:
    from sklearn.datasets import load_digits

    bunch = load_digits()
    return (bunch.data / 16.0).astype(np.float32), bunch.target.astype(np.int64)


def test_cnn_shapes_and_scalar_standardization() -> None:
    net = SmallCNNNet(8, 8, n_classes=10)
    x = torch.rand(5, 64) * 16
    net.set_standardization(x)
    assert net.input_mean.shape == net.input_std.shape == (1,)
    assert float(net.input_mean) == pytest.approx(float(x.mean()), rel=1e-5)
    assert net(x).shape == (5, 10) and net.embed(x).shape == (5, net.embed_dim)
    assert net.in_dim == 64
    assert SmallCNNNet(28, 28, n_classes=3)(torch.rand(2, 784)).shape == (2, 3)
    with pytest.raises(ValueError, match="shape"):
        net.set_standardization(torch.rand(3, 63))
    with pytest.raises(ValueError):
        SmallCNNNet(1, 8, n_classes=2)


def test_make_net_picks_the_architecture_and_infers_square_images() -> None:
    assert isinstance(make_net(TrainConfig(), 64, 3), MLPHeadNet)
    cnn = make_net(TrainConfig(architecture="cnn"), 64, 3)
    assert isinstance(cnn, SmallCNNNet) and cnn.init_kwargs["height"] == 8
    assert image_side(784) == (28, 28)
    with pytest.raises(ValueError, match="square"):
        make_net(TrainConfig(architecture="cnn"), 50, 3)
    with pytest.raises(ValueError, match="does not match"):
        make_net(TrainConfig(architecture="cnn", image_shape=(4, 8)), 64, 3)
    with pytest.raises(ValueError, match="architecture"):
        TrainConfig(architecture="transformer")


def test_cnn_checkpoint_round_trip_and_mc_dropout(tmp_path: Path) -> None:
    x, y = _digits()
    net = fit_supervised(x[:100], y[:100], config=TrainConfig(architecture="cnn", epochs=2,
                                                             min_steps=0), seed=0, device="cpu")
    directory = save_checkpoint(tmp_path / "ck", net, meta={}, arrays={})
    loaded = load_net(directory)
    assert isinstance(loaded, SmallCNNNet)
    assert np.array_equal(predict_proba(loaded, x[:20]), predict_proba(net, x[:20]))
    assert embed(loaded, x[:4]).shape == (4, 64)
    samples = mc_dropout_proba(loaded, x[:6], samples=4, seed=0)
    assert samples.shape == (4, 6, 10) and not np.allclose(samples[0], samples[1])


@pytest.mark.slow
def test_cnn_learns_real_digits() -> None:
    x, y = _digits()
    config = TrainConfig(architecture="cnn", epochs=60, min_steps=0)
    net = fit_supervised(x[:1000], y[:1000], config=config, seed=0, device="cpu")
    accuracy = (predict_proba(net, x[1000:]).argmax(1) == y[1000:]).mean()
    assert accuracy > 0.9


def test_early_stopping_stops_on_a_rising_holdout_loss_and_keeps_the_best_weights() -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(120, 20)).astype(np.float32)
    y = rng.integers(0, 3, size=120)  # pure noise: memorizing it raises the hold-out loss
    config = TrainConfig(hidden=64, epochs=400, min_steps=0, max_steps=None, batch_size=32,
                         dropout=0.0, early_stopping_patience=5)
    net, info = fit_supervised_with_info(x[:80], y[:80], config=config, seed=0, device="cpu",
                                         validation=(x[80:], y[80:]))
    assert info.stopped_early and info.epochs_run < 400
    assert info.best_epoch < info.epochs_run
    off = dataclasses.replace(config, early_stopping_patience=0)
    _, full = fit_supervised_with_info(x[:80], y[:80], config=off, seed=0, device="cpu",
                                       validation=(x[80:], y[80:]))
    assert full.epochs_run == full.best_epoch == 400 and not full.stopped_early

    def holdout_loss(n: torch.nn.Module) -> float:
        with torch.no_grad():
            logits = n(torch.from_numpy(x[80:]))
        return float(torch.nn.functional.cross_entropy(logits, torch.from_numpy(y[80:])))

    assert holdout_loss(net) < holdout_loss(fit_supervised(x[:80], y[:80], config=off, seed=0,
                                                           device="cpu"))


def test_self_training_refit_uses_the_early_stopped_length() -> None:
    rng = np.random.default_rng(1)
    x = rng.normal(size=(150, 10)).astype(np.float32)
    y = (x[:, 0] + 0.8 * rng.normal(size=150) > 0).astype(np.int64)
    config = TrainConfig(hidden=64, epochs=300, min_steps=0, max_steps=None, batch_size=32,
                         early_stopping_patience=3, pseudo_rounds=0)
    result = fit_self_training(x, y, x[:0], config=config, seed=0, device="cpu")
    assert result.metrics["validation"] == "holdout"
    assert len(result.metrics["best_epochs"]) == 1 and result.metrics["best_epochs"][0] < 300


def test_a_one_class_holdout_does_not_steer_early_stopping() -> None:
    rng = np.random.default_rng(2)
    x = rng.normal(size=(60, 6)).astype(np.float32)
    y = np.zeros(60, dtype=np.int64)
    y[:2] = 1  # the hold-out (20 % per class; singletons stay in train) is all class 0
    assert not can_early_stop(np.zeros(5, dtype=np.int64), "binary")
    assert can_early_stop(np.array([0, 1]), "binary")
    config = TrainConfig(hidden=16, epochs=20, min_steps=0, pseudo_rounds=0, task="binary")
    result = fit_self_training(x, y, x[:0], config=config, seed=0, device="cpu")
    assert result.metrics["validation"] == "holdout" and result.metrics["best_epochs"] == []
