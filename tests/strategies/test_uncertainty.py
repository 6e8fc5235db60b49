"""Uncertainty score functions against brute-force references, and the strategies built on them."""

import math
from collections.abc import Callable

import numpy as np
import pytest

from app.strategies.base import PoolView, QueryStrategy
from app.strategies.uncertainty import (
    EntropySampling,
    LeastConfidence,
    MarginSampling,
    entropy_scores,
    least_confidence_scores,
    margin_scores,
    multilabel_uncertainty_scores,
)

ViewFactory = Callable[..., PoolView]


def _dirichlet_probs(m: int = 300, c: int = 6, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).dirichlet(np.ones(c), size=m).astype(np.float32)


def test_hand_computed_rows() -> None:
    probs = np.array([[0.7, 0.2, 0.1], [0.4, 0.4, 0.2], [1.0, 0.0, 0.0]], dtype=np.float32)

    np.testing.assert_allclose(least_confidence_scores(probs), [0.3, 0.6, 0.0], atol=1e-6)
    np.testing.assert_allclose(margin_scores(probs), [0.5, 1.0, 0.0], atol=1e-6)
    expected_entropy = [
        -(0.7 * math.log(0.7) + 0.2 * math.log(0.2) + 0.1 * math.log(0.1)),
        -(2 * 0.4 * math.log(0.4) + 0.2 * math.log(0.2)),
        0.0,  # 0 log 0 = 0: no NaN for a one-hot row
    ]
    np.testing.assert_allclose(entropy_scores(probs), expected_entropy, atol=1e-6)


def test_margin_matches_full_sort_reference() -> None:
    probs = _dirichlet_probs()

    ordered = np.sort(probs, axis=1)
    reference = 1.0 - (ordered[:, -1].astype(np.float64) - ordered[:, -2])

    np.testing.assert_allclose(margin_scores(probs), reference, rtol=0, atol=1e-7)


@pytest.mark.parametrize("n_classes", [2, 3, 64, 65, 300])
def test_margin_both_code_paths_match_the_sort_reference(n_classes: int) -> None:
    # <= 64 classes: running maxima over columns; more: argmax, mask, max
    probs = np.random.default_rng(n_classes).dirichlet(np.ones(n_classes), 400)
    probs = probs.astype(np.float32)
    ordered = np.sort(probs.astype(np.float64), axis=1)
    reference = 1.0 - (ordered[:, -1] - ordered[:, -2])
    np.testing.assert_allclose(margin_scores(probs), reference, rtol=0, atol=1e-6)


def test_least_confidence_and_entropy_match_brute_force() -> None:
    probs = _dirichlet_probs()
    probs[:5, 0] = 0.0  # exact zeros must count as 0 log 0 = 0

    lc_reference = [1.0 - max(float(p) for p in row) for row in probs]
    entropy_reference = [-sum(float(p) * math.log(p) for p in row if p > 0) for row in probs]

    np.testing.assert_allclose(least_confidence_scores(probs), lc_reference, atol=1e-7)
    np.testing.assert_allclose(entropy_scores(probs), entropy_reference, atol=1e-6)


def test_uniform_row_is_the_most_uncertain() -> None:
    probs = np.vstack([np.full((1, 4), 0.25), _dirichlet_probs(50, 4)]).astype(np.float32)

    for score in (least_confidence_scores, margin_scores, entropy_scores):
        assert int(np.argmax(score(probs))) == 0
    assert entropy_scores(probs)[0] == pytest.approx(math.log(4))


def test_multilabel_scores() -> None:
    probs = np.array([[0.5, 0.5], [0.0, 1.0], [0.5, 1.0], [0.9, 0.2]], dtype=np.float32)

    expected = [1.0, 0.0, 0.5, ((1 - 0.8) + (1 - 0.6)) / 2]

    np.testing.assert_allclose(multilabel_uncertainty_scores(probs), expected, atol=1e-6)


@pytest.mark.parametrize(
    "score",
    [least_confidence_scores, margin_scores, entropy_scores, multilabel_uncertainty_scores],
)
def test_scores_are_float64_and_do_not_touch_the_input(score: Callable[..., np.ndarray]) -> None:
    probs = _dirichlet_probs(40, 3)
    probs.flags.writeable = False

    scores = score(probs)

    assert scores.dtype == np.float64 and scores.shape == (40,)


@pytest.mark.parametrize(
    "score",
    [least_confidence_scores, margin_scores, entropy_scores, multilabel_uncertainty_scores],
)
def test_scores_reject_non_matrices(score: Callable[..., np.ndarray]) -> None:
    with pytest.raises(ValueError, match="2-D"):
        score(np.array([0.2, 0.8], dtype=np.float32))


def test_margin_needs_two_classes() -> None:
    with pytest.raises(ValueError, match="at least 2"):
        margin_scores(np.ones((3, 1), dtype=np.float32))


@pytest.mark.parametrize(
    ("strategy", "score"),
    [
        (LeastConfidence(), least_confidence_scores),
        (MarginSampling(), margin_scores),
        (EntropySampling(), entropy_scores),
    ],
)
def test_top_k_is_the_true_argmax_set_among_candidates(
    strategy: QueryStrategy, score: Callable[..., np.ndarray], view_from_arrays: ViewFactory
) -> None:
    probs = _dirichlet_probs(300, 6, seed=1)
    labeled = np.zeros(300, dtype=bool)
    labeled[::3] = True
    blocked = np.zeros(300, dtype=bool)
    blocked[1::7] = True
    view = view_from_arrays(probs=probs, labeled=labeled, blocked=blocked)
    candidates = view.unlabeled_positions()
    reference_scores = score(probs[candidates])
    assert np.unique(reference_scores).size == candidates.size  # tie-free, so the set is unique

    selection = strategy.select(view, 20, np.random.default_rng(0))

    expected = candidates[np.argsort(reference_scores)[-20:]]
    assert set(selection.positions.tolist()) == set(expected.tolist())
    assert selection.positions[0] == candidates[np.argmax(reference_scores)]
    np.testing.assert_allclose(selection.scores, score(probs[selection.positions]))


@pytest.mark.parametrize("strategy", [LeastConfidence(), MarginSampling(), EntropySampling()])
def test_multilabel_views_use_the_multilabel_score(
    strategy: QueryStrategy, view_from_arrays: ViewFactory
) -> None:
    probs = np.random.default_rng(2).random((120, 4)).astype(np.float32)
    view = view_from_arrays(probs=probs, task="multilabel")
    reference = multilabel_uncertainty_scores(probs)

    selection = strategy.select(view, 10, np.random.default_rng(0))

    assert set(selection.positions.tolist()) == set(np.argsort(reference)[-10:].tolist())
    np.testing.assert_allclose(selection.scores, reference[selection.positions])


def test_margin_selection_on_a_million_rows(view_from_arrays: ViewFactory) -> None:
    rng = np.random.default_rng(0)
    probs = rng.random((1_000_000, 10), dtype=np.float32)
    probs[:, 0] += 1.0  # a clear winner per row: every random margin is > 0.09
    probs /= probs.sum(axis=1, keepdims=True)
    hardest = rng.choice(1_000_000, size=100, replace=False)
    probs[hardest] = 0.0
    probs[hardest, :2] = 0.5  # margin 0 -> score exactly 1, above every random row
    view = view_from_arrays(probs=probs)

    selection = MarginSampling().select(view, 100, np.random.default_rng(0))

    assert set(selection.positions.tolist()) == set(hardest.tolist())
    np.testing.assert_allclose(selection.scores, 1.0)
