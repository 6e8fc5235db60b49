"""Subsample and Weighted wrappers."""

import numpy as np
import pytest

from app.errors import InvalidStrategyParams, UnknownStrategy
from app.strategies import default_registry
from app.strategies.base import PoolView
from app.strategies.composite import weighted_scores
from app.strategies.uncertainty import margin_scores


def test_subsample_takes_requires_from_base() -> None:
    registry = default_registry()
    assert registry.create("subsample", {"base": "kcenter"}).requires == {"embeddings"}
    assert registry.create("subsample", {"base": "bald"}).requires == {"mc_probs"}
    with pytest.raises(UnknownStrategy):
        registry.create("subsample", {"base": "nope"})
    with pytest.raises(InvalidStrategyParams):
        registry.create("subsample", {"size": 0})


def test_subsample_only_picks_from_its_sample(tiny_view: PoolView) -> None:
    strategy = default_registry().create("subsample", {"base": "margin", "size": 30})
    selection = strategy.select(tiny_view, 10, np.random.default_rng(0))
    assert selection.info["n_subsampled"] == 30
    # the same draw, replayed: the subsample comes first from the rng
    sample = np.random.default_rng(0).choice(tiny_view.unlabeled_positions(), 30, replace=False)
    assert np.isin(selection.positions, sample).all()


def test_subsample_larger_than_pool_is_the_base(tiny_view: PoolView) -> None:
    registry = default_registry()
    ours = registry.create("subsample", {"size": 10_000}).select(
        tiny_view, 10, np.random.default_rng(0)
    )
    base = registry.create("margin", {}).select(tiny_view, 10, np.random.default_rng(0))
    assert ours.positions.tolist() == base.positions.tolist()


def test_weighted_scores_reference() -> None:
    a, b = np.array([0.0, 1.0, 2.0]), np.array([4.0, 2.0, 0.0])
    np.testing.assert_allclose(
        weighted_scores({"a": a, "b": b}, {"a": 1.0, "b": 3.0}), [3.0, 2.0, 1.0]
    )


def test_weighted_margin_only_is_margin(tiny_view: PoolView) -> None:
    registry = default_registry()
    strategy = registry.create("weighted", {"components": {"margin": 1.0}, "max_similarity": 1.0})
    selection = strategy.select(tiny_view, 10, np.random.default_rng(0))
    candidates = tiny_view.unlabeled_positions()
    expected = candidates[np.argsort(-margin_scores(tiny_view.probs[candidates]))[:10]]
    assert selection.positions.tolist() == expected.tolist()


@pytest.mark.parametrize(
    "components", [{}, {"nope": 1.0}, {"margin": -1.0}, {"margin": 0.0}, {"margin": True}]
)
def test_weighted_rejects_bad_components(components: dict[str, object]) -> None:
    with pytest.raises(InvalidStrategyParams):
        default_registry().create("weighted", {"components": components})


def test_weighted_requires_union() -> None:
    strategy = default_registry().create("weighted", {"components": {"bald": 1, "margin": 1}})
    assert strategy.requires == {"mc_probs", "probs"}
