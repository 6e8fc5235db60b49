"""The train job's configuration and its calibrated MC-dropout samples."""

import numpy as np

from app.config import Settings
from app.jobs import validation
from app.jobs.retrain import _mc_probs, semi_supervised_config, train_config
from app.ml.networks import MLPHeadNet
from app.ml.predict import mc_dropout_proba
from app.ml.train import TrainConfig


def test_self_training_keeps_the_per_class_cap_unless_given() -> None:
    semi = {"semi_supervised": {"method": "self_training"}}
    default = TrainConfig().max_pseudo_per_class
    assert default is not None
    assert train_config(semi, "multiclass", 0.95).max_pseudo_per_class == default
    assert semi_supervised_config(semi, 0.95).max_per_class == default
    given = {"semi_supervised": {"method": "self_training", "max_per_class": 7}}
    assert train_config(given, "multiclass", 0.95).max_pseudo_per_class == 7
    off = train_config({"semi_supervised": None}, "multiclass", 0.95)
    assert off.pseudo_rounds == 0 and not off.uses_pseudo_labels


def test_mc_probs_are_calibrated_float16_samples(tmp_path) -> None:
    rng = np.random.default_rng(0)
    features = rng.normal(size=(300, 12)).astype(np.float32)
    net = MLPHeadNet(12, 5, hidden=16, dropout=0.3)
    settings = Settings(data_dir=tmp_path, mc_dropout_samples=4)
    got = _mc_probs(net, features, settings, seed=2, device="cpu", temperature=1.7)
    assert got.dtype == np.float16 and got.shape == (4, 300, 5)
    raw = mc_dropout_proba(net, features, samples=4, seed=2)
    expected = validation.calibrate(raw, 1.7, task="multiclass")
    np.testing.assert_allclose(got.astype(np.float32), expected, atol=2e-3)
    assert (
        _mc_probs(
            net, features, Settings(data_dir=tmp_path, mc_dropout_samples=0), seed=2, device="cpu"
        )
        is None
    )
