"""StrategyRegistry: names, creation errors, task checks and the GET /strategies description."""

import json
from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import pytest

from app.errors import InvalidStrategyParams, UnknownStrategy, UnsupportedTask
from app.strategies import PoolView, Selection, StrategyRegistry, default_registry
from app.strategies.base import check_n, top_k
from app.strategies.coldstart import TypicalClusters
from app.strategies.registry import FAMILIES

EXPECTED_NAMES = [
    "alipy_bmdr",
    "alipy_coreset",
    "alipy_density_weighted",
    "alipy_eer",
    "alipy_entropy",
    "alipy_graph_density",
    "alipy_least_confident",
    "alipy_margin",
    "alipy_qbc",
    "alipy_quire",
    "alipy_random",
    "alipy_spal",
    "badge",
    "bald",
    "diverse_margin",
    "entropy",
    "information_density",
    "kcenter",
    "least_confidence",
    "margin",
    "random",
    "subsample",
    "typical",
    "weighted",
]


@dataclass(frozen=True)
class _FirstN:
    """Test double: takes the first n candidates; binary only; one required param."""

    offset: int

    requires: ClassVar[frozenset[str]] = frozenset()
    tasks: ClassVar[frozenset[str]] = frozenset({"binary"})

    def select(self, view: PoolView, n: int, rng: np.random.Generator) -> Selection:
        candidates = check_n(view, n)
        return top_k(candidates, -np.arange(candidates.size, dtype=np.float64), n, rng)


def _registry_with_double() -> StrategyRegistry:
    registry = StrategyRegistry()
    registry.add("first_n", _FirstN, family="random", source="test", summary="test double")
    return registry


def test_default_registry_names() -> None:
    assert default_registry().names() == EXPECTED_NAMES


def test_default_registry_is_a_new_object_each_call() -> None:
    first, second = default_registry(), default_registry()
    assert first is not second
    first.add("extra", _FirstN, family="random", source="s", summary="s")
    assert "extra" not in second.names()


def test_unknown_name_lists_the_available_names() -> None:
    with pytest.raises(UnknownStrategy) as info:
        default_registry().create("no_such_strategy", {})

    assert info.value.context["available"] == EXPECTED_NAMES
    assert "margin" in info.value.message and "'no_such_strategy'" in info.value.message


@pytest.mark.parametrize(
    ("name", "params"),
    [
        ("typical", {"max_points": -1}),  # ValueError from __post_init__
        ("typical", {"max_points": "many"}),
        ("typical", {"no_such_param": 1}),  # TypeError from the constructor
        ("margin", {"temperature": 2.0}),
        ("alipy_margin", {"measure": "entropy"}),  # fixed by the name, not a parameter
        ("first_n", {}),  # missing required parameter
    ],
)
def test_bad_params_raise_invalid_strategy_params(name: str, params: dict[str, object]) -> None:
    registry = default_registry()
    registry.add("first_n", _FirstN, family="random", source="test", summary="test double")

    with pytest.raises(InvalidStrategyParams) as info:
        registry.create(name, params)

    assert name in info.value.message


def test_create_passes_params_to_the_constructor() -> None:
    strategy = default_registry().create("typical", {"max_points": 500, "k_neighbors": 5})
    assert strategy == TypicalClusters(max_points=500, k_neighbors=5)
    assert _registry_with_double().create("first_n", {"offset": 3}) == _FirstN(offset=3)


def test_duplicate_name_raises_value_error() -> None:
    registry = _registry_with_double()
    with pytest.raises(ValueError, match="twice"):
        registry.add("first_n", TypicalClusters, family="cold_start", source="s", summary="s")


def test_unknown_family_raises_value_error() -> None:
    with pytest.raises(ValueError, match="family"):
        StrategyRegistry().add("x", _FirstN, family="magic", source="s", summary="s")


def test_check_task_names_the_supported_tasks() -> None:
    registry = _registry_with_double()
    registry.check_task("first_n", "binary")

    with pytest.raises(UnsupportedTask, match="supports binary") as info:
        registry.check_task("first_n", "multilabel")
    assert info.value.context["supported"] == ["binary"]
    with pytest.raises(UnknownStrategy):
        registry.check_task("nope", "binary")


def test_describe_covers_every_name_with_params() -> None:
    registry = default_registry()
    described = registry.describe()

    assert [d["name"] for d in described] == sorted([*EXPECTED_NAMES, "alipy_lal"])
    json.dumps(described)  # JSON-ready
    by_name = {d["name"]: d for d in described}
    lal = by_name.pop("alipy_lal")
    assert lal["available"] is False and "offline" in lal["reason"]
    described = list(by_name.values())
    keys = {"name", "family", "source", "summary", "tasks", "requires", "params", "available"}
    for entry in described:
        assert set(entry) == keys and entry["available"] is True
        assert entry["family"] in FAMILIES
        assert entry["source"] and entry["summary"]
        assert entry["tasks"] == sorted(entry["tasks"])
        assert entry["requires"] == sorted(entry["requires"])
        assert all(set(p) == {"name", "type", "default"} for p in entry["params"])
    assert by_name["typical"]["family"] == "cold_start"
    assert by_name["typical"]["requires"] == ["embeddings"]
    assert by_name["typical"]["params"] == [
        {"name": "max_points", "type": "int", "default": 20_000},
        {"name": "k_neighbors", "type": "int", "default": 20},
        {"name": "max_iter", "type": "int", "default": 20},
    ]
    assert by_name["margin"]["params"] == [
        {"name": "max_similarity", "type": "float", "default": 0.99}
    ]
    assert by_name["alipy_margin"]["params"] == []  # measure is fixed by the name
    assert by_name["alipy_margin"]["tasks"] == ["binary", "multiclass"]
    assert "ALiPy" in by_name["alipy_entropy"]["source"]
    assert "Hacohen" in by_name["typical"]["source"]
    assert by_name["least_confidence"]["tasks"] == ["binary", "multiclass", "multilabel"]


def test_describe_reports_required_params_with_no_default() -> None:
    (entry,) = _registry_with_double().describe()
    assert entry["params"] == [{"name": "offset", "type": "int", "default": None}]
    assert entry["tasks"] == ["binary"] and entry["requires"] == []


def test_unavailable_strategy_says_why() -> None:
    from app.errors import StrategyUnavailable

    with pytest.raises(StrategyUnavailable) as info:
        default_registry().create("alipy_lal", {})
    assert info.value.status_code == 422 and "offline" in info.value.message
    assert "alipy_lal" not in default_registry().names()


def test_binary_only_refusal_names_why() -> None:
    with pytest.raises(UnsupportedTask) as info:
        default_registry().check_task("alipy_quire", "multiclass")
    assert "binary" in info.value.message and "{-1, +1}" in info.value.message
