"""BALD scores against a per-row loop reference."""

import numpy as np

from app.strategies.base import PoolView
from app.strategies.bayesian import BALD, bald_scores


def _reference(mc: np.ndarray) -> np.ndarray:
    out = []
    for i in range(mc.shape[1]):
        samples = mc[:, i].astype(np.float64)
        mean = samples.mean(0)
        h = -sum(p * np.log(p) for p in mean if p > 0)
        eh = np.mean([-sum(p * np.log(p) for p in s if p > 0) for s in samples])
        out.append(max(h - eh, 0.0))
    return np.array(out)


def test_bald_matches_loop_reference() -> None:
    mc = np.random.default_rng(0).dirichlet(np.ones(3), size=(5, 40)).astype(np.float32)
    np.testing.assert_allclose(bald_scores(mc), _reference(mc), rtol=1e-6, atol=1e-9)


def test_bald_zero_when_samples_agree_and_float16_ok() -> None:
    p = np.random.default_rng(1).dirichlet(np.ones(4), size=30)
    mc = np.repeat(p[None], 8, axis=0).astype(np.float16)
    np.testing.assert_allclose(bald_scores(mc), 0.0, atol=1e-9)


def test_bald_prefers_disagreement(view_from_arrays) -> None:  # type: ignore[no-untyped-def]
    agree = np.tile([[0.5, 0.5]], (10, 1))
    mc = np.repeat(agree[None], 4, axis=0)
    mc[:, 3] = [[1, 0], [0, 1], [1, 0], [0, 1]]  # row 3: confident samples that disagree
    view: PoolView = view_from_arrays(probs=agree.astype(np.float32))
    import dataclasses

    view = dataclasses.replace(view, mc_probs=mc.astype(np.float32))
    selection = BALD().select(view, 1, np.random.default_rng(0))
    assert selection.positions.tolist() == [3]
    assert selection.scores[0] > 0.6
