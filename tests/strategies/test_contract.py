"""One contract every registered strategy must keep (small-text / sklearn style check suite)."""

import ast
import copy
import dataclasses
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from app.errors import ModelNotReady, PoolExhausted, UnsupportedTask
from app.strategies import PoolView, QueryStrategy, Selection, default_registry
from app.strategies.base import TASKS
from tests.strategies.conftest import make_view

# Parameters that keep the contract fast (every strategy has full defaults); {} otherwise.
EXAMPLE_PARAMS: dict[str, dict[str, object]] = {"alipy_eer": {"candidates": 10}}
# One model fit per candidate and class: seconds per call even on the tiny pool.
SLOW = {"alipy_eer"}
NAMES = [
    pytest.param(name, marks=pytest.mark.slow) if name in SLOW else name
    for name in default_registry().names()
]
STRATEGIES_DIR = Path(__file__).resolve().parents[2] / "app" / "strategies"


def _create(name: str) -> QueryStrategy:
    return default_registry().create(name, EXAMPLE_PARAMS.get(name, {}))


def _select(name: str, view: PoolView, n: int, seed: int = 0) -> Selection:
    return _create(name).select(_supported(name, view), n, np.random.default_rng(seed))


def _supported(name: str, view: PoolView) -> PoolView:
    """``view``, or the same pool as a binary project for binary-only strategies (the tiny
    pools of every task share positions, labeled and blocked masks)."""
    if view.task in default_registry().get_info(name).tasks:
        return view
    return make_view("binary")


def assert_pool_view_equal(actual: PoolView, expected: PoolView) -> None:
    """Every field equal, arrays including dtype and shape."""
    for f in dataclasses.fields(PoolView):
        a, e = getattr(actual, f.name), getattr(expected, f.name)
        if isinstance(e, np.ndarray):
            assert isinstance(a, np.ndarray), f.name
            assert a.dtype == e.dtype, f.name
            np.testing.assert_array_equal(a, e, err_msg=f.name)
        else:
            assert a == e, f.name


def _read_only(view: PoolView) -> PoolView:
    """A copy of ``view`` whose arrays raise on any in-place write."""
    arrays: dict[str, Any] = {}
    for f in dataclasses.fields(PoolView):
        value = getattr(view, f.name)
        if isinstance(value, np.ndarray):
            value = value.copy()
            value.flags.writeable = False
            arrays[f.name] = value
    return dataclasses.replace(view, **arrays)


def test_registry_is_not_empty() -> None:
    assert {"random", "margin", "typical", "alipy_margin"} <= set(default_registry().names())


@pytest.mark.parametrize("name", NAMES)
def test_is_a_frozen_params_only_dataclass(name: str) -> None:
    strategy = _create(name)
    assert isinstance(strategy, QueryStrategy)
    assert dataclasses.is_dataclass(strategy)
    cls = type(strategy)
    assert cls.requires <= {"probs", "embeddings", "mc_probs"}
    assert cls.tasks and cls.tasks <= set(TASKS)
    public_methods = {
        attr for attr in dir(cls) if not attr.startswith("_") and callable(getattr(cls, attr))
    }
    assert public_methods == {"select"}
    for f in dataclasses.fields(strategy):
        with pytest.raises(dataclasses.FrozenInstanceError):
            setattr(strategy, f.name, getattr(strategy, f.name))


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("n", [1, 5, 30])
def test_selects_distinct_candidates_best_first(name: str, n: int, tiny_view: PoolView) -> None:
    tiny_view = _supported(name, tiny_view)
    selection = _select(name, tiny_view, n)

    positions, scores = selection.positions, selection.scores
    assert positions.dtype == np.int64 and positions.shape == (n,)
    assert np.unique(positions).size == n
    assert np.isin(positions, tiny_view.unlabeled_positions()).all()
    assert not tiny_view.labeled[positions].any()
    assert tiny_view.blocked is not None and not tiny_view.blocked[positions].any()
    assert scores.dtype == np.float64 and scores.shape == positions.shape
    finite = scores[~np.isnan(scores)]
    assert np.all(np.diff(finite) <= 0), "scores must be sorted best first"
    assert np.isnan(scores[finite.size :]).all(), "NaN scores come last"


@pytest.mark.parametrize("name", NAMES)
def test_can_take_every_selectable_position(name: str, tiny_view: PoolView) -> None:
    tiny_view = _supported(name, tiny_view)
    selection = _select(name, tiny_view, tiny_view.n_unlabeled)

    assert np.array_equal(np.sort(selection.positions), tiny_view.unlabeled_positions())


@pytest.mark.parametrize("name", NAMES)
def test_never_mutates_the_view(name: str, tiny_view: PoolView) -> None:
    tiny_view = _supported(name, tiny_view)
    before = copy.deepcopy(tiny_view)

    _select(name, tiny_view, 10)
    _select(name, _read_only(tiny_view), 10)  # any in-place write raises ValueError

    assert_pool_view_equal(tiny_view, before)


@pytest.mark.parametrize("name", NAMES)
def test_same_seed_same_selection(name: str, tiny_view: PoolView) -> None:
    tiny_view = _supported(name, tiny_view)
    first = _select(name, tiny_view, 10, seed=123)
    second = _select(name, tiny_view, 10, seed=123)

    np.testing.assert_array_equal(first.positions, second.positions)
    np.testing.assert_array_equal(first.scores, second.scores)


@pytest.mark.parametrize("name", NAMES)
def test_too_many_raises_pool_exhausted(name: str, tiny_view: PoolView) -> None:
    tiny_view = _supported(name, tiny_view)
    with pytest.raises(PoolExhausted) as info:
        _select(name, tiny_view, tiny_view.n_unlabeled + 1)
    assert info.value.context["available"] == tiny_view.n_unlabeled


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("n", [0, -3])
def test_non_positive_n_raises_value_error(name: str, n: int, tiny_view: PoolView) -> None:
    tiny_view = _supported(name, tiny_view)
    with pytest.raises(ValueError, match="n must be >= 1"):
        _select(name, tiny_view, n)


@pytest.mark.parametrize("name", NAMES)
def test_missing_required_array_raises_model_not_ready(name: str, tiny_view: PoolView) -> None:
    tiny_view = _supported(name, tiny_view)
    strategy = _create(name)
    for array_name in type(strategy).requires:
        missing: dict[str, Any] = {array_name: None}
        view = dataclasses.replace(tiny_view, **missing)
        with pytest.raises(ModelNotReady):
            strategy.select(view, 5, np.random.default_rng(0))
    bare = dataclasses.replace(tiny_view, probs=None, embeddings=None, mc_probs=None)
    if not type(strategy).requires:
        assert _select(name, bare, 5).positions.shape == (5,)


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("task", TASKS)
def test_task_support(name: str, task: str, view_for_task: Callable[[str], PoolView]) -> None:
    registry = default_registry()
    supported = registry.get_info(name).tasks
    if task in supported:
        registry.check_task(name, task)
        view = view_for_task(task)
        selection = _select(name, view, 5)
        assert np.isin(selection.positions, view.unlabeled_positions()).all()
    else:
        with pytest.raises(UnsupportedTask) as info:
            registry.check_task(name, task)
        assert all(t in info.value.message for t in supported)


def _imported_modules(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    modules: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            modules.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            modules.add(node.module)
    return modules


@pytest.mark.parametrize("path", sorted(STRATEGIES_DIR.glob("*.py")), ids=lambda p: p.name)
def test_imports_stay_inside_the_allowed_set(path: Path) -> None:
    allowed_roots = {"numpy", "sklearn", "faiss"} | set(sys.stdlib_module_names)
    for module in _imported_modules(path):
        root = module.split(".")[0]
        if module == "alipy" or root == "alipy":
            assert path.name == "alipy_adapter.py", f"{path.name} imports alipy"
        elif root == "app":
            assert module == "app.errors" or module.startswith("app.strategies"), module
        else:
            assert root in allowed_roots, f"{path.name} imports {module}"
