"""Temperature scaling against a brute-force NLL reference and torch's softmax."""

import numpy as np
import pytest
import torch

from app.ml.calibration import (
    MAX_TEMPERATURE,
    apply_temperature,
    fit_temperature,
    logits_from_probs,
    temperature_nll,
)
from app.ml.metrics import expected_calibration_error


def _overconfident(
    seed: int, n: int = 2000, c: int = 5, scale: float = 3.0
) -> tuple[np.ndarray, np.ndarray]:
    """Labels drawn from softmax(z); the reported logits are z * scale (overconfident)."""
    rng = np.random.default_rng(seed)
    z = rng.normal(size=(n, c)) * 1.5
    p_true = np.exp(z) / np.exp(z).sum(axis=1, keepdims=True)
    y = np.array([rng.choice(c, p=row) for row in p_true])
    return z * scale, y


@pytest.mark.parametrize("seed", [0, 1])
def test_fit_matches_grid_search(seed: int) -> None:
    logits, y = _overconfident(seed)
    t = fit_temperature(logits, y)
    grid = np.exp(np.linspace(np.log(0.2), np.log(10), 4001))
    nll = [temperature_nll(logits, y, g) for g in grid]
    best = grid[int(np.argmin(nll))]
    assert t == pytest.approx(best, rel=2e-3)
    assert t == pytest.approx(3.0, rel=0.15)  # it recovers the over-scaling


def test_fit_reduces_nll_and_ece_keeps_argmax() -> None:
    logits, y = _overconfident(2)
    probs = torch.softmax(torch.from_numpy(logits), dim=1).numpy()
    t = fit_temperature(logits_from_probs(probs), y)
    calibrated = apply_temperature(probs, t)
    assert temperature_nll(logits, y, t) < temperature_nll(logits, y, 1.0)
    assert expected_calibration_error(calibrated, y) < expected_calibration_error(probs, y) / 2
    assert np.array_equal(calibrated.argmax(axis=1), probs.argmax(axis=1))
    np.testing.assert_allclose(calibrated.sum(axis=1), 1.0, atol=1e-5)


def test_apply_on_probs_equals_softmax_of_scaled_logits() -> None:
    rng = np.random.default_rng(5)
    logits = rng.normal(size=(50, 7)) * 4
    probs = torch.softmax(torch.from_numpy(logits), dim=1).numpy()
    expected = torch.softmax(torch.from_numpy(logits / 2.5), dim=1).numpy()
    np.testing.assert_allclose(apply_temperature(probs, 2.5), expected, atol=1e-6)
    assert apply_temperature(probs, 2.5).dtype == np.float32


def test_multilabel_sigmoid() -> None:
    rng = np.random.default_rng(6)
    z = rng.normal(size=(3000, 3))
    y = (rng.random(z.shape) < 1 / (1 + np.exp(-z))).astype(int)
    probs = 1 / (1 + np.exp(-2.0 * z))  # twice as confident as the truth
    t = fit_temperature(logits_from_probs(probs, multilabel=True), y, multilabel=True)
    assert t == pytest.approx(2.0, rel=0.15)
    calibrated = apply_temperature(probs, t, multilabel=True)
    np.testing.assert_allclose(calibrated, 1 / (1 + np.exp(-2.0 * z / t)), atol=1e-5)


def test_underconfident_gets_temperature_below_one() -> None:
    logits, y = _overconfident(7, scale=0.4)
    assert fit_temperature(logits, y) < 0.6


def test_degenerate_inputs() -> None:
    assert fit_temperature(np.zeros((0, 3)), np.zeros(0, dtype=int)) == 1.0
    # perfectly separable: NLL keeps falling as T -> 0; the fit stops at the bound
    logits = np.array([[5.0, 0.0], [0.0, 5.0]])
    assert fit_temperature(logits, np.array([0, 1])) == pytest.approx(0.05)
    # always wrong: T goes to the upper bound
    assert fit_temperature(logits, np.array([1, 0])) == pytest.approx(MAX_TEMPERATURE)
    with pytest.raises(ValueError):
        apply_temperature(np.ones((2, 2)) / 2, 0.0)
    with pytest.raises(ValueError):
        fit_temperature(logits, np.array([0, 2]))
