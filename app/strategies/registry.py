"""Stable strategy names mapped to strategy classes, with the facts ``GET /strategies`` shows."""

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from app.errors import (
    InvalidStrategyParams,
    StrategyUnavailable,
    UnknownStrategy,
    UnsupportedTask,
)
from app.strategies.base import TASKS, QueryStrategy

FAMILIES = (
    "uncertainty",
    "committee",
    "bayesian",
    "expected_error",
    "density",
    "diversity",
    "hybrid",
    "cold_start",
    "random",
)


@dataclass(frozen=True)
class StrategyInfo:
    """What the registry knows about one strategy name.

    Attributes:
        name: stable public name (``"margin"``).
        cls: the strategy class; ``cls(**params)`` builds an instance.
        family: one of :data:`FAMILIES`.
        source: citation of the paper (or library) the method comes from.
        summary: one sentence for humans.
    """

    name: str
    cls: type[QueryStrategy]
    family: str
    source: str
    summary: str

    @property
    def tasks(self) -> list[str]:
        """Sorted tasks the strategy supports (all tasks when the class does not say)."""
        return sorted(getattr(self.cls, "tasks", TASKS))

    @property
    def requires(self) -> list[str]:
        """Sorted PoolView arrays the strategy needs."""
        return sorted(getattr(self.cls, "requires", frozenset()))


def _type_name(annotation: object) -> str:
    """Readable name of a field annotation: ``int``, ``Literal['a', 'b']``."""
    if isinstance(annotation, type):
        return annotation.__name__
    return str(annotation).replace("typing.", "")


def describe_params(cls: type) -> list[dict[str, Any]]:
    """Constructor parameters of a dataclass strategy as ``{name, type, default}`` dicts.

    Fields with ``init=False`` (fixed by a subclass) are not parameters. A field without a
    default reports ``default: None``.

    Raises:
        TypeError: if ``cls`` is not a dataclass.
    """
    params: list[dict[str, Any]] = []
    for f in dataclasses.fields(cls):
        if not f.init:
            continue
        if f.default is not dataclasses.MISSING:
            default: object = f.default
        elif f.default_factory is not dataclasses.MISSING:
            default = f.default_factory()
        else:
            default = None
        params.append({"name": f.name, "type": _type_name(f.type), "default": default})
    return params


class StrategyRegistry:
    """A dict from stable names to strategy classes; injected where strategies are needed.

    Build one with :func:`app.strategies.default_registry`; tests may build their own.
    """

    def __init__(self) -> None:
        self._entries: dict[str, StrategyInfo] = {}
        self._unavailable: dict[str, dict[str, Any]] = {}

    def add_unavailable(
        self, name: str, *, family: str, source: str, summary: str, reason: str
    ) -> None:
        """List ``name`` in :meth:`describe` as unavailable (with ``reason``); it cannot be built.

        Raises:
            ValueError: if ``name`` is taken or ``family`` is unknown.
        """
        if name in self._entries or name in self._unavailable:
            raise ValueError(f"strategy {name!r} registered twice")
        if family not in FAMILIES:
            raise ValueError(f"family must be one of {FAMILIES}, got {family!r}")
        self._unavailable[name] = {
            "name": name, "family": family, "source": source, "summary": summary,
            "tasks": [], "requires": [], "params": [], "available": False, "reason": reason,
        }

    def add(
        self, name: str, cls: type[QueryStrategy], *, family: str, source: str, summary: str
    ) -> None:
        """Register ``cls`` under ``name``.

        Args:
            name: stable public name.
            cls: a dataclass strategy class (constructor params only, ``select`` method).
            family: one of :data:`FAMILIES`.
            source: paper citation.
            summary: one sentence.

        Raises:
            ValueError: if ``name`` is already registered, ``family`` is unknown, or ``cls`` is
                not a dataclass.
        """
        if name in self._entries:
            raise ValueError(f"strategy {name!r} registered twice")
        if family not in FAMILIES:
            raise ValueError(f"family must be one of {FAMILIES}, got {family!r}")
        if not dataclasses.is_dataclass(cls):
            raise ValueError(f"strategy {name!r}: {cls!r} is not a dataclass")
        self._entries[name] = StrategyInfo(name, cls, family, source, summary)

    def names(self) -> list[str]:
        """All registered names, sorted."""
        return sorted(self._entries)

    def get_info(self, name: str) -> StrategyInfo:
        """The registry entry for ``name``.

        Raises:
            UnknownStrategy: if ``name`` is not registered (lists the available names).
            StrategyUnavailable: if ``name`` is listed as unavailable (says why).
        """
        try:
            return self._entries[name]
        except KeyError:
            if name in self._unavailable:
                reason = self._unavailable[name]["reason"]
                raise StrategyUnavailable(
                    f"strategy {name!r} is unavailable: {reason}", strategy=name, reason=reason
                ) from None
            raise UnknownStrategy(name, available=self.names()) from None

    def create(self, name: str, params: Mapping[str, object] | None = None) -> QueryStrategy:
        """Build the strategy ``name`` with constructor ``params``.

        Raises:
            UnknownStrategy: if ``name`` is not registered.
            InvalidStrategyParams: if the constructor rejects ``params`` (unknown or missing
                names, wrong types, out-of-range values).
        """
        info = self.get_info(name)
        try:
            return info.cls(**dict(params or {}))
        except (TypeError, ValueError) as exc:
            raise InvalidStrategyParams(name, reason=str(exc)) from None

    def check_task(self, name: str, task: str) -> None:
        """Check that strategy ``name`` supports a project ``task``.

        Raises:
            UnknownStrategy: if ``name`` is not registered.
            UnsupportedTask: if the strategy does not support ``task`` (the message lists the
                tasks it does support).
        """
        info = self.get_info(name)
        supported = info.tasks
        if task not in supported:
            why = getattr(info.cls, "task_note", "")
            raise UnsupportedTask(
                f"strategy {name!r} supports {', '.join(supported)} projects, not {task!r}"
                + (f" ({why})" if why else ""),
                strategy=name,
                task=task,
                supported=supported,
            )

    def describe(self) -> list[dict[str, Any]]:
        """One JSON-ready dict per strategy, sorted by name.

        Returns:
            ``[{name, family, source, summary, tasks, requires, params, available}]`` where
            ``tasks`` and ``requires`` are sorted lists and ``params`` is ``[{name, type,
            default}]``; unavailable entries (``available: false``) add a ``reason``.
        """
        available = [
            {
                "name": info.name,
                "family": info.family,
                "source": info.source,
                "summary": info.summary,
                "tasks": info.tasks,
                "requires": info.requires,
                "params": describe_params(info.cls),
                "available": True,
            }
            for info in (self._entries[name] for name in self.names())
        ]
        listed = available + [dict(entry) for entry in self._unavailable.values()]
        return sorted(listed, key=lambda entry: str(entry["name"]))
