"""Uniform random sampling: the baseline every other strategy must beat."""

from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from app.strategies.base import TASKS, PoolView, Selection, check_n, top_k


@dataclass(frozen=True, slots=True)
class RandomSampling:
    """Pick selectable positions uniformly at random, without replacement.

    Each candidate gets an independent ``U[0, 1)`` draw from ``rng`` as its score, and the
    ``n`` largest draws win, so the ranks are a uniformly random order and the same seed gives
    the same batch. Needs no model output, so it also works at cold start.

    Source: passive (random) sampling, the standard baseline in B. Settles, "Active Learning
    Literature Survey", UW-Madison TR 1648, 2009.
    """

    requires: ClassVar[frozenset[str]] = frozenset()
    tasks: ClassVar[frozenset[str]] = frozenset(TASKS)

    def select(self, view: PoolView, n: int, rng: np.random.Generator) -> Selection:
        """Return ``n`` random selectable positions with their float64 ``[n]`` random scores.

        Raises:
            ValueError: if ``n < 1``.
            PoolExhausted: if fewer than ``n`` positions are selectable.
        """
        candidates = check_n(view, n)
        scores = rng.random((candidates.shape[0],))  # float64 [m]
        selection = top_k(candidates, scores, n, rng)
        selection.info["n_candidates"] = int(candidates.shape[0])
        return selection
