"""Strategies built from other strategies or score functions: Subsample and Weighted.

Both take JSON-ready parameters (a registered strategy *name* plus its params, or a mapping of
score names to weights), so ``POST /queries`` can build them. Their ``requires`` depends on the
parameters: the class attribute holds the requirements of the default parameters and
``__post_init__`` sets the instance's own (the service reads ``strategy.requires`` on the
instance).
"""

import dataclasses
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np
import numpy.typing as npt

from app.strategies.base import (
    TASKS,
    PoolView,
    QueryStrategy,
    Selection,
    check_n,
    require_array,
)
from app.strategies.bayesian import bald_scores
from app.strategies.dedupe import DEFAULT_MAX_SIMILARITY, select_distinct
from app.strategies.uncertainty import (
    entropy_scores,
    least_confidence_scores,
    margin_scores,
    multilabel_uncertainty_scores,
)

MAX_SUBSAMPLE = 10_000_000


def _build(name: str, params: Mapping[str, object]) -> tuple[QueryStrategy, list[str]]:
    """A registered strategy and its tasks (imported late: the registry imports this module)."""
    from app.strategies import default_registry

    registry = default_registry()
    strategy = registry.create(name, params)
    return strategy, registry.get_info(name).tasks


@dataclass(frozen=True)
class Subsample:
    """Run ``base`` on a uniform random subsample of ``size`` selectable rows.

    The rest of the pool is treated as blocked for that call, so any strategy's cost is bounded
    by ``size`` instead of the pool (small-text's ``SubsamplingQueryStrategy``). Uses ``rng``
    for the subsample, then passes it on to ``base``.

    Attributes:
        base: name of a registered strategy (``"margin"``...).
        size: rows kept (``1..10,000,000``; raised to ``n`` when smaller).
        base_params: constructor parameters of ``base``.

    Raises:
        UnknownStrategy, InvalidStrategyParams: from building ``base``.

    Source:
        C. Schröder, A. Niekler and M. Potthast, "Revisiting Uncertainty-based Query Strategies
        for Active Learning with Transformers", Findings of ACL 2022 (small-text).
    """

    base: str = "margin"
    size: int = 10_000
    base_params: dict[str, Any] = field(default_factory=dict)

    requires: ClassVar[frozenset[str]] = frozenset({"probs"})
    tasks: ClassVar[frozenset[str]] = frozenset(TASKS)

    def __post_init__(self) -> None:
        if isinstance(self.size, bool) or not isinstance(self.size, int):
            raise ValueError(f"size must be an integer, got {self.size!r}")
        if not 1 <= self.size <= MAX_SUBSAMPLE:
            raise ValueError(f"size must be in [1, {MAX_SUBSAMPLE}], got {self.size}")
        if not isinstance(self.base, str) or self.base == "subsample":
            raise ValueError(f"base must be another registered strategy name, got {self.base!r}")
        if not isinstance(self.base_params, Mapping):
            raise ValueError("base_params must be an object")
        strategy, _tasks = _build(self.base, self.base_params)
        object.__setattr__(self, "requires", frozenset(strategy.requires))

    def select(self, view: PoolView, n: int, rng: np.random.Generator) -> Selection:
        """Return ``base``'s choice of ``n`` among ``size`` random selectable rows.

        Raises:
            ValueError: if ``n < 1``.
            PoolExhausted: if fewer than ``n`` positions are selectable.
            UnsupportedTask: if ``base`` does not support the view's task.
            ModelNotReady, StrategyFailed: from ``base``.
        """
        candidates = check_n(view, n)
        strategy, tasks = _build(self.base, self.base_params)
        if view.task not in tasks:
            from app.errors import UnsupportedTask

            raise UnsupportedTask(
                f"strategy {self.base!r} supports {', '.join(tasks)} projects, not {view.task!r}",
                strategy=self.base, task=view.task, supported=tasks,
            )
        size = max(self.size, n)
        sub_view = view
        if candidates.shape[0] > size:
            kept = rng.choice(candidates, size=size, replace=False)
            blocked = np.ones(view.n_items, dtype=bool)
            blocked[kept] = False
            sub_view = dataclasses.replace(view, blocked=blocked)
        selection = strategy.select(sub_view, n, rng)
        selection.info.update(
            base=self.base, n_candidates=int(candidates.shape[0]),
            n_subsampled=int(min(size, candidates.shape[0])),
        )
        return selection


def _minmax(scores: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    """Scale to ``[0, 1]`` (a constant vector becomes zeros)."""
    low, high = float(scores.min()), float(scores.max())
    if high <= low:
        return np.zeros_like(scores)
    return (scores - low) / (high - low)


def _probs_score(function: Callable[[Any], npt.NDArray[np.float64]]) -> Callable[..., Any]:
    def score(view: PoolView, candidates: npt.NDArray[np.int64], rng: np.random.Generator) -> Any:
        probs = np.asarray(require_array(view, "probs")[candidates], dtype=np.float32)
        if view.task == "multilabel":
            return multilabel_uncertainty_scores(probs)
        return function(probs)

    return score


def _bald(view: PoolView, candidates: npt.NDArray[np.int64], rng: np.random.Generator) -> Any:
    mc_probs = require_array(view, "mc_probs")
    return bald_scores(mc_probs[:, candidates], multilabel=view.task == "multilabel")


def _random(view: PoolView, candidates: npt.NDArray[np.int64], rng: np.random.Generator) -> Any:
    return rng.random(candidates.shape[0])


# name -> (score function over candidates, PoolView arrays it needs)
COMPONENTS: dict[str, tuple[Callable[..., Any], frozenset[str]]] = {
    "least_confidence": (_probs_score(least_confidence_scores), frozenset({"probs"})),
    "margin": (_probs_score(margin_scores), frozenset({"probs"})),
    "entropy": (_probs_score(entropy_scores), frozenset({"probs"})),
    "bald": (_bald, frozenset({"mc_probs"})),
    "random": (_random, frozenset()),
}


def weighted_scores(
    component_scores: Mapping[str, npt.NDArray[np.float64]], weights: Mapping[str, float]
) -> npt.NDArray[np.float64]:
    """``sum_k w_k * minmax(s_k)``: a weighted sum of min-max normalized score vectors.

    Args:
        component_scores: name -> float ``[m]`` scores (higher is better).
        weights: name -> non-negative weight (same keys).

    Returns:
        float64 ``[m]``.

    Raises:
        ValueError: if the keys differ or the vectors have different shapes.
    """
    if set(component_scores) != set(weights):
        raise ValueError("component_scores and weights need the same names")
    shapes = {np.shape(s) for s in component_scores.values()}
    if len(shapes) != 1:
        raise ValueError(f"score vectors differ in shape: {sorted(shapes)}")
    total = np.zeros(shapes.pop(), dtype=np.float64)
    for name, scores in component_scores.items():
        total += float(weights[name]) * _minmax(np.asarray(scores, dtype=np.float64))
    return total


@dataclass(frozen=True)
class Weighted:
    """A weighted sum of min-max normalized acquisition scores over the selectable rows.

    Components: ``least_confidence``, ``margin``, ``entropy`` (probs), ``bald`` (mc_probs) and
    ``random`` (a ``U[0, 1)`` draw: mixing it in gives epsilon-greedy-style exploration). The
    default ``{"margin": 0.8, "random": 0.2}`` is margin sampling with some exploration. The
    batch goes through the near-duplicate filter when the view has embeddings.

    Attributes:
        components: name -> weight (``>= 0``, at least one positive).
        max_similarity: cosine threshold of the near-duplicate filter (``1`` turns it off).

    Source:
        Score combination as in hybrid strategies surveyed by Settles 2009 ("Active Learning
        Literature Survey", §5); exploration mixing as in Bouneffouf et al., "Contextual Bandit
        for Active Learning", ICONIP 2014.
    """

    components: dict[str, float] = field(default_factory=lambda: {"margin": 0.8, "random": 0.2})
    max_similarity: float = DEFAULT_MAX_SIMILARITY

    requires: ClassVar[frozenset[str]] = frozenset({"probs"})
    tasks: ClassVar[frozenset[str]] = frozenset(TASKS)

    def __post_init__(self) -> None:
        if not isinstance(self.components, Mapping) or not self.components:
            raise ValueError("components must be a non-empty object of name -> weight")
        unknown = sorted(set(self.components) - set(COMPONENTS))
        if unknown:
            raise ValueError(f"unknown components {unknown}; choose from {sorted(COMPONENTS)}")
        weights = list(self.components.values())
        if any(isinstance(w, bool) or not isinstance(w, int | float) or w < 0 for w in weights):
            raise ValueError("weights must be non-negative numbers")
        if not sum(weights) > 0:
            raise ValueError("at least one weight must be positive")
        if not -1.0 < float(self.max_similarity) <= 1.0:
            raise ValueError(f"max_similarity must be in (-1, 1], got {self.max_similarity}")
        needs = frozenset().union(*(COMPONENTS[name][1] for name in self.components))
        object.__setattr__(self, "requires", needs)

    def select(self, view: PoolView, n: int, rng: np.random.Generator) -> Selection:
        """Return the ``n`` best selectable positions by the weighted score, best first.

        Raises:
            ValueError: if ``n < 1``.
            PoolExhausted: if fewer than ``n`` positions are selectable.
            ModelNotReady: if a component's array is missing.
        """
        candidates = check_n(view, n)
        scores = {
            name: np.asarray(COMPONENTS[name][0](view, candidates, rng), dtype=np.float64)
            for name in sorted(self.components)
        }
        combined = weighted_scores(scores, self.components)
        selection = select_distinct(
            candidates, combined, n, rng,
            embeddings=view.embeddings, max_similarity=self.max_similarity,
        )
        selection.info["n_candidates"] = int(candidates.shape[0])
        return selection
