"""The ALiPy adapter: shims, same choices as our own strategies, errors wrapped."""

import collections
import collections.abc
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from app.errors import InvalidStrategyParams, PoolExhausted, StrategyFailed, UnsupportedTask
from app.strategies import QueryStrategy, default_registry
from app.strategies.alipy_adapter import (
    AlipyEntropy,
    AlipyUncertainty,
    _import_alipy_query_strategy,
)
from app.strategies.base import PoolView
from app.strategies.uncertainty import (
    EntropySampling,
    LeastConfidence,
    MarginSampling,
    entropy_scores,
    least_confidence_scores,
    margin_scores,
)

ViewFactory = Callable[..., PoolView]
REPO_ROOT = Path(__file__).resolve().parents[2]
OURS: dict[str, tuple[QueryStrategy, Callable[..., np.ndarray]]] = {
    "least_confident": (LeastConfidence(), least_confidence_scores),
    "margin": (MarginSampling(), margin_scores),
    "entropy": (EntropySampling(), entropy_scores),
}


@pytest.fixture
def toy_view(view_from_arrays: ViewFactory) -> PoolView:
    """120 rows x 4 classes, a third labeled, a few blocked; scores tie-free for every measure."""
    probs = np.random.default_rng(0).dirichlet(np.ones(4), size=120).astype(np.float32)
    labeled = np.zeros(120, dtype=bool)
    labeled[::3] = True
    blocked = np.zeros(120, dtype=bool)
    blocked[1::10] = True
    view = view_from_arrays(probs=probs, labeled=labeled, blocked=blocked)
    candidates = view.unlabeled_positions()
    for _, score in OURS.values():
        assert np.unique(score(probs[candidates])).size == candidates.size
    return view


def test_shim_makes_alipy_importable_and_callable_on_this_python() -> None:
    query_strategy = _import_alipy_query_strategy()

    assert query_strategy.__name__ == "alipy.query_strategy"
    assert collections.Iterable is collections.abc.Iterable  # type: ignore[attr-defined]
    assert "MPLBACKEND" in os.environ
    picked = query_strategy.QueryInstanceUncertainty(measure="margin").select_by_prediction_mat(
        unlabel_index=[10, 11, 12],
        predict=np.array([[0.9, 0.1], [0.5, 0.5], [0.6, 0.4]]),
        batch_size=1,
    )
    assert list(picked) == [11]  # values of unlabel_index, not offsets into it


def test_importing_the_package_does_not_import_alipy() -> None:
    code = (
        "import sys; from app.strategies import default_registry; "
        "default_registry().create('alipy_margin', {}); "
        "assert 'alipy' not in sys.modules, 'alipy imported eagerly'"
    )
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO_ROOT, env=env, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize("measure", sorted(OURS))
def test_alipy_chooses_the_same_set_as_ours(measure: str, toy_view: PoolView) -> None:
    ours, score = OURS[measure]

    alipy_strategy = AlipyUncertainty(measure=measure)  # type: ignore[arg-type]
    theirs = alipy_strategy.select(toy_view, 15, np.random.default_rng(0))
    mine = ours.select(toy_view, 15, np.random.default_rng(0))

    assert set(theirs.positions.tolist()) == set(mine.positions.tolist())
    assert np.isin(theirs.positions, toy_view.unlabeled_positions()).all()
    assert toy_view.probs is not None
    np.testing.assert_allclose(theirs.scores, score(toy_view.probs[theirs.positions]))
    np.testing.assert_array_equal(theirs.positions, mine.positions)  # same best-first order
    assert theirs.info["backend"] == "alipy"


def test_alipy_entropy_gets_a_private_copy(view_from_arrays: ViewFactory) -> None:
    probs = np.random.default_rng(1).dirichlet(np.ones(3), size=50).astype(np.float32)
    probs[:10] = [1.0, 0.0, 0.0]  # ALiPy's entropy writes 1e-6 over every p <= 0
    probs.flags.writeable = False
    view = view_from_arrays(probs=probs)

    selection = AlipyEntropy().select(view, 5, np.random.default_rng(0))

    assert probs[:10, 1:].max() == 0.0
    assert not np.isin(selection.positions, np.arange(10)).any()


class _Raising:
    """Stand-in for QueryInstanceUncertainty whose selection fails like ALiPy does."""

    error: Exception = Exception("boom")
    calls = 0

    def __init__(self, **kwargs: object) -> None:
        pass

    def select_by_prediction_mat(self, **kwargs: object) -> object:
        type(self).calls += 1
        raise type(self).error


@pytest.mark.parametrize(
    "error",
    [Exception("boom"), AssertionError("boom"), TypeError("boom"), ValueError("boom")],
)
def test_alipy_errors_become_strategy_failed(
    error: Exception, toy_view: PoolView, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(_Raising, "error", error)
    monkeypatch.setattr(_import_alipy_query_strategy(), "QueryInstanceUncertainty", _Raising)

    with pytest.raises(StrategyFailed, match="boom") as info:
        AlipyUncertainty().select(toy_view, 5, np.random.default_rng(0))

    assert info.value.__cause__ is error


def test_pool_exhausted_is_raised_before_alipy_runs(
    toy_view: PoolView, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(_Raising, "calls", 0)
    monkeypatch.setattr(_import_alipy_query_strategy(), "QueryInstanceUncertainty", _Raising)

    with pytest.raises(PoolExhausted):
        AlipyUncertainty().select(toy_view, toy_view.n_unlabeled + 1, np.random.default_rng(0))

    assert _Raising.calls == 0


@pytest.mark.parametrize("answer", [[0, 0, 1], [0, 1], [0, 1, 10_000], [0.0, 1.0, 2.0]])
def test_malformed_alipy_answers_become_strategy_failed(
    answer: list[float], toy_view: PoolView, monkeypatch: pytest.MonkeyPatch
) -> None:
    class _Wrong(_Raising):
        def select_by_prediction_mat(self, **kwargs: object) -> object:
            return answer

    monkeypatch.setattr(_import_alipy_query_strategy(), "QueryInstanceUncertainty", _Wrong)

    with pytest.raises(StrategyFailed):
        AlipyUncertainty().select(toy_view, 3, np.random.default_rng(0))


def test_multilabel_is_refused(view_from_arrays: ViewFactory) -> None:
    view = view_from_arrays(probs=np.full((20, 3), 0.5, dtype=np.float32), task="multilabel")

    with pytest.raises(UnsupportedTask):
        AlipyUncertainty().select(view, 2, np.random.default_rng(0))


def test_measure_is_validated_and_fixed_per_registry_name() -> None:
    with pytest.raises(ValueError, match="measure"):
        AlipyUncertainty(measure="distance_to_boundary")  # type: ignore[arg-type]
    registry = default_registry()
    for name, measure in [
        ("alipy_least_confident", "least_confident"),
        ("alipy_margin", "margin"),
        ("alipy_entropy", "entropy"),
    ]:
        strategy = registry.create(name, {})
        assert isinstance(strategy, AlipyUncertainty) and strategy.measure == measure
        with pytest.raises(InvalidStrategyParams):
            registry.create(name, {"measure": "margin"})


# --- the model-based / model-free ALiPy strategies on a capped local problem -----------------


def test_alipy_coreset_matches_our_kcenter(view_for_task) -> None:  # type: ignore[no-untyped-def]
    from app.strategies.alipy_adapter import AlipyCoreSet
    from app.strategies.diversity import KCenterGreedy

    view = view_for_task("multiclass")
    ours = KCenterGreedy().select(view, 8, np.random.default_rng(0))
    theirs = AlipyCoreSet().select(view, 8, np.random.default_rng(0))
    assert theirs.positions.tolist() == ours.positions.tolist()


def test_candidate_cap_and_prefilter_are_reported(view_for_task) -> None:  # type: ignore[no-untyped-def]
    from app.strategies.alipy_adapter import AlipyGraphDensity

    selection = AlipyGraphDensity(candidates=30).select(
        view_for_task("multiclass"), 5, np.random.default_rng(0)
    )
    assert selection.info["candidates"] == 30 and selection.info["prefilter"] == "margin"
    assert selection.info["n_considered"] == 30 and np.isnan(selection.scores).all()


def test_qbc_kl_and_eer_run_on_multiclass(view_for_task) -> None:  # type: ignore[no-untyped-def]
    from app.strategies.alipy_adapter import AlipyExpectedErrorReduction, AlipyQBC

    view = view_for_task("multiclass")
    qbc = AlipyQBC(disagreement="KL_divergence").select(view, 5, np.random.default_rng(0))
    eer = AlipyExpectedErrorReduction(candidates=8).select(view, 2, np.random.default_rng(0))
    assert np.isin(qbc.positions, view.unlabeled_positions()).all()
    assert np.isin(eer.positions, view.unlabeled_positions()).all()


def test_binary_only_strategies_refuse_multiclass(view_for_task) -> None:  # type: ignore[no-untyped-def]
    from app.strategies.alipy_adapter import AlipyBMDR, AlipyQUIRE

    for strategy in (AlipyBMDR(), AlipyQUIRE()):
        with pytest.raises(UnsupportedTask, match="binary"):
            strategy.select(view_for_task("multiclass"), 3, np.random.default_rng(0))


def test_model_based_strategies_need_labels_of_two_classes(view_for_task) -> None:  # type: ignore[no-untyped-def]
    import dataclasses

    from app.errors import ModelNotReady
    from app.strategies.alipy_adapter import AlipyQBC

    view = view_for_task("multiclass")
    one_class = dataclasses.replace(view, labels=np.where(view.labeled, 0, -1))
    with pytest.raises(ModelNotReady):
        AlipyQBC().select(one_class, 3, np.random.default_rng(0))


def test_alipy_exceptions_become_strategy_failed(view_for_task, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    from app.strategies.alipy_adapter import AlipyCoreSet

    query_strategy = _import_alipy_query_strategy()

    def boom(*args: object, **kwargs: object) -> None:
        raise Exception("bare ALiPy failure")

    monkeypatch.setattr(query_strategy, "QueryInstanceCoresetGreedy", boom)
    with pytest.raises(StrategyFailed, match="bare ALiPy failure"):
        AlipyCoreSet().select(view_for_task("multiclass"), 3, np.random.default_rng(0))
