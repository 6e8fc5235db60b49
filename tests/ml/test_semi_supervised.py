"""Consistency methods (FixMatch, FlexMatch, FreeMatch, Mean Teacher, distribution alignment)
and the job-facing ``fit_semi_supervised``."""

import dataclasses
from collections.abc import Iterator

import numpy as np
import pytest
import torch

from app.ml.negatives import NegativeRows
from app.ml.predict import predict_proba
from app.ml.semi_supervised import (
    CONSISTENCY_METHODS,
    SemiSupervisedConfig,
    fit_consistency,
    fit_semi_supervised,
    select_with_thresholds,
)
from app.ml.ssl_methods import DistributionAlignment, FlexMatchState, FreeMatchState
from app.ml.train import TrainConfig, fit_supervised

FAST = TrainConfig(hidden=32, epochs=30, min_steps=100, batch_size=64)
SSL_FAST = SemiSupervisedConfig(steps=300, labeled_batch=16, unlabeled_ratio=4)


@pytest.fixture(autouse=True, scope="module")
def _one_torch_thread() -> Iterator[None]:
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _blobs(n: int, n_classes: int = 3, dim: int = 8, spread: float = 1.0, seed: int = 0):
    rng = np.random.default_rng(seed)
    centers = np.random.default_rng(0).normal(size=(n_classes, dim)) * 4.0
    y = rng.integers(0, n_classes, size=n).astype(np.int64)
    return (centers[y] + spread * rng.normal(size=(n, dim))).astype(np.float32), y


@pytest.mark.parametrize("method", CONSISTENCY_METHODS)
def test_each_method_learns_blobs_and_reports_thresholds(method: str) -> None:
    x, y = _blobs(500)
    ssl = dataclasses.replace(SSL_FAST, method=method)
    fit = fit_consistency(x[:15], y[:15], x[15:400], config=FAST, ssl=ssl, seed=0, device="cpu")
    accuracy = (predict_proba(fit.net, x[400:]).argmax(1) == y[400:]).mean()
    assert accuracy > 0.9
    assert fit.thresholds.shape == (3,) and fit.thresholds.dtype == np.float32
    assert 0.0 <= fit.mask_rate <= 1.0
    assert fit.steps_run == fit.best_step == ssl.steps  # no hold-out: no early stopping
    assert not fit.net.training


def test_same_seed_is_identical_and_other_seed_differs() -> None:
    x, y = _blobs(300, spread=2.0)
    ssl = dataclasses.replace(SSL_FAST, method="flexmatch", distribution_alignment=True)
    probs = [
        predict_proba(
            fit_consistency(x[:20], y[:20], x[20:200], config=FAST, ssl=ssl, seed=s,
                            device="cpu").net,
            x[200:],
        )
        for s in (5, 5, 6)
    ]
    assert np.array_equal(probs[0], probs[1])
    assert not np.array_equal(probs[0], probs[2])


def test_global_torch_rng_is_left_alone() -> None:
    x, y = _blobs(100)
    torch.manual_seed(7)
    expected = torch.rand(3)
    torch.manual_seed(7)
    fit_consistency(x[:10], y[:10], x[10:], config=FAST, ssl=SSL_FAST, seed=0, device="cpu")
    assert torch.equal(torch.rand(3), expected)


def test_flexmatch_thresholds_follow_learning_status_with_warmup() -> None:
    cfg = SemiSupervisedConfig(method="flexmatch", threshold=0.9)
    state = FlexMatchState(n_classes=3, n_unlabeled=10, cfg=cfg)
    assert torch.equal(state.thresholds(), torch.zeros(3))  # nothing learned: accept all
    probs = torch.tensor([[0.95, 0.03, 0.02], [0.97, 0.02, 0.01], [0.1, 0.85, 0.05]])
    state.update(probs, torch.tensor([0, 1, 2]))
    # sigma = [2, 0, 0] (row 2 is under tau); 8 rows never confident -> warm-up denominator 8
    beta = torch.tensor([2 / 8, 0.0, 0.0])
    assert torch.allclose(state.beta, beta)
    assert torch.allclose(state.thresholds(), 0.9 * beta / (2 - beta))
    full = torch.tensor([[0.99, 0.005, 0.005]] * 6 + [[0.005, 0.99, 0.005]] * 4)
    state.update(full, torch.arange(10))  # every row confident: normalized by max sigma
    assert torch.allclose(state.beta, torch.tensor([1.0, 4 / 6, 0.0]))
    assert state.thresholds()[0] == pytest.approx(0.9)


def test_freematch_threshold_starts_at_one_over_c_and_tracks_confidence() -> None:
    state = FreeMatchState(n_classes=4, n_unlabeled=5, cfg=SemiSupervisedConfig(method="freematch"))
    assert torch.allclose(state.thresholds(), torch.full((4,), 0.25))
    probs = torch.tensor([[0.97, 0.01, 0.01, 0.01]] * 8)
    for _ in range(3000):
        state.update(probs, torch.arange(8))
    assert float(state.tau) == pytest.approx(0.97 - 0.72 * 0.999**3000, abs=1e-3)
    thresholds = state.thresholds()
    assert thresholds[0] == pytest.approx(float(state.tau))  # MaxNorm: the top class gets tau
    assert bool((thresholds[1:] < thresholds[0]).all())


def test_distribution_alignment_moves_the_marginal_to_the_target() -> None:
    align = DistributionAlignment(torch.tensor([0.5, 0.5]))
    skewed = torch.tensor([[0.9, 0.1], [0.8, 0.2], [0.7, 0.3]])
    aligned = align(skewed)
    assert torch.allclose(aligned.sum(1), torch.ones(3))
    assert float(aligned[:, 0].mean()) < float(skewed[:, 0].mean())
    assert float(aligned[:, 0].mean()) == pytest.approx(0.5, abs=0.05)


def test_select_with_thresholds_matches_a_brute_force_reference() -> None:
    rng = np.random.default_rng(0)
    probs = rng.dirichlet(np.ones(4) * 0.3, size=300).astype(np.float32)
    thresholds = np.array([0.5, 0.9, 0.0, 0.7], dtype=np.float32)
    chosen = select_with_thresholds(probs, thresholds, max_per_class=20)
    expected: list[int] = []
    labels, conf = probs.argmax(1), probs.max(1)
    for c in range(4):
        rows = [i for i in range(300) if labels[i] == c and conf[i] >= thresholds[c]]
        expected += sorted(rows, key=lambda i: (-conf[i], i))[:20]
    assert chosen.positions.tolist() == sorted(expected)
    assert np.array_equal(chosen.labels, labels[chosen.positions])
    with pytest.raises(ValueError, match="thresholds"):
        select_with_thresholds(probs, thresholds[:3], None)


def test_negative_rows_enter_the_consistency_loss() -> None:
    x, y = _blobs(300)
    plain = fit_consistency(x[:15], y[:15], x[15:], config=FAST, ssl=SSL_FAST, seed=0,
                            device="cpu")
    far = np.flatnonzero(y == 0)[:40]  # "these are not class 0" (false, to show the effect)
    negatives = NegativeRows(x=x[far], classes=np.zeros(40, dtype=np.int64),
                             weights=np.full(40, 5.0, dtype=np.float32))
    pushed = fit_consistency(x[:15], y[:15], x[15:], config=FAST, ssl=SSL_FAST, seed=0,
                             device="cpu", negatives=negatives)
    p_plain = predict_proba(plain.net, x[far])[:, 0].mean()
    p_pushed = predict_proba(pushed.net, x[far])[:, 0].mean()
    assert p_pushed < p_plain - 0.2


def test_fit_semi_supervised_holdout_metrics_and_pseudo_labels() -> None:
    x, y = _blobs(600, spread=1.5)
    x_u, y_u = x[60:500], y[60:500]
    result = fit_semi_supervised(
        x[:60], y[:60], x_u, config=FAST, ssl=dataclasses.replace(SSL_FAST, method="fixmatch"),
        seed=0, device="cpu",
    )
    m = result.metrics
    assert m["method"] == "fixmatch" and m["validation"] == "holdout"
    assert 1 <= m["best_step"] <= SSL_FAST.steps
    assert m["n_pseudo"] == result.pseudo_positions.size > 0
    assert np.all(result.pseudo_confidences >= 0.95)
    assert (result.pseudo_labels == y_u[result.pseudo_positions]).mean() > 0.9
    assert np.all(np.diff(result.pseudo_positions) > 0)
    accuracy = (predict_proba(result.net, x[500:]).argmax(1) == y[500:]).mean()
    assert accuracy > 0.9


def test_fit_semi_supervised_few_labels_uses_cv_of_supervised_fits() -> None:
    x, y = _blobs(300)
    labeled = np.concatenate([np.flatnonzero(y == c)[:3] for c in range(3)])
    result = fit_semi_supervised(
        x[labeled], y[labeled], x[100:], config=FAST,
        ssl=dataclasses.replace(SSL_FAST, method="mean_teacher"), seed=0, device="cpu",
    )
    assert result.metrics["validation"] == "cv" and result.metrics["cv_of"] == "supervised"
    assert result.metrics["method"] == "mean_teacher"


@pytest.mark.parametrize(
    ("method", "expected"), [("none", "none"), ("self_training", "self_training")]
)
def test_none_and_self_training_go_through_fit_self_training(method: str, expected: str) -> None:
    x, y = _blobs(400)
    config = dataclasses.replace(FAST, pseudo_label_threshold=0.9)
    result = fit_semi_supervised(
        x[:50], y[:50], x[50:], config=config, ssl=SemiSupervisedConfig(method=method), seed=0,
        device="cpu",
    )
    assert result.metrics["method"] == expected
    assert (result.metrics["n_pseudo"] > 0) == (method == "self_training")


def test_multilabel_falls_back_to_supervised() -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(200, 6)).astype(np.float32)
    y = np.stack([x[:, 0] > 0, x[:, 1] > 0], axis=1).astype(np.float32)
    config = dataclasses.replace(FAST, task="multilabel")
    result = fit_semi_supervised(x[:100], y[:100], x[100:], config=config, ssl=SSL_FAST, seed=0,
                                 device="cpu")
    assert result.metrics["method"] == "none" and result.pseudo_positions.size == 0
    with pytest.raises(ValueError, match="single-label"):
        fit_consistency(x[:100], y[:100], x[100:], config=config, ssl=SSL_FAST, seed=0,
                        device="cpu")


@pytest.mark.parametrize(
    "change",
    [{"method": "mixmatch"}, {"threshold": 0.0}, {"steps": 0}, {"unlabeled_ratio": 0},
     {"ema_decay": 1.0}, {"augment": "audio"}, {"weight": -1.0}],
)
def test_config_validation(change: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        SemiSupervisedConfig(**change)  # type: ignore[arg-type]


def test_input_validation() -> None:
    x, y = _blobs(50)
    with pytest.raises(ValueError, match="x_unlabeled"):
        fit_consistency(x, y, np.zeros((0, 8), np.float32), config=FAST, ssl=SSL_FAST, seed=0,
                        device="cpu")
    with pytest.raises(ValueError, match="x_unlabeled"):
        fit_consistency(x, y, np.zeros((5, 3), np.float32), config=FAST, ssl=SSL_FAST, seed=0,
                        device="cpu")
    with pytest.raises(ValueError, match="method"):
        fit_consistency(x, y, x, config=FAST, ssl=SemiSupervisedConfig(method="self_training"),
                        seed=0, device="cpu")


@pytest.mark.slow
def test_flexmatch_beats_supervised_on_real_digits_with_four_labels_per_class() -> None:
    """Real data (sklearn digits, 4 labels per class): the unlabeled pool must help a lot."""
    from sklearn.datasets import load_digits

    bunch = load_digits()
    x, y = (bunch.data / 16.0).astype(np.float32), bunch.target.astype(np.int64)
    rng = np.random.default_rng(0)
    order = rng.permutation(y.size)
    test, pool = order[:400], order[400:]
    labeled = np.concatenate([pool[y[pool] == c][:4] for c in range(10)])
    unlabeled = np.setdiff1d(pool, labeled)
    config = TrainConfig()
    sup = fit_supervised(x[labeled], y[labeled], config=config, seed=0, device="cpu")
    ssl = SemiSupervisedConfig(method="flexmatch", steps=600)
    fit = fit_consistency(x[labeled], y[labeled], x[unlabeled], config=config, ssl=ssl, seed=0,
                          device="cpu")
    acc_sup = (predict_proba(sup, x[test]).argmax(1) == y[test]).mean()
    acc_ssl = (predict_proba(fit.net, x[test]).argmax(1) == y[test]).mean()
    assert acc_ssl > acc_sup + 0.04, (acc_sup, acc_ssl)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("architecture", ["mlp", "cnn"])
def test_cuda_consistency_fit_is_repeatable_and_learns(architecture: str) -> None:
    from sklearn.datasets import load_digits

    bunch = load_digits()
    x, y = (bunch.data / 16.0).astype(np.float32), bunch.target.astype(np.int64)
    config = dataclasses.replace(TrainConfig(), architecture=architecture)
    ssl = SemiSupervisedConfig(method="freematch", steps=300, distribution_alignment=True)
    fits = [
        fit_consistency(x[:100], y[:100], x[100:1400], config=config, ssl=ssl, seed=0,
                        device="cuda")
        for _ in range(2)
    ]
    probs = [predict_proba(f.net, x[1400:], device="cuda") for f in fits]
    # seeded sampling/augmentation: repeatable up to cuDNN's non-deterministic conv kernels
    assert (probs[0].argmax(1) == probs[1].argmax(1)).mean() > 0.98
    assert (probs[0].argmax(1) == y[1400:]).mean() > 0.8
