"""The contract every query strategy follows: a pool view in, positions and scores out.

Arrays are indexed by **position** (the row of an item in the project's arrays), never by
database id; only ``app.services`` maps positions to item ids.
"""

from dataclasses import dataclass, field
from typing import ClassVar, Protocol, runtime_checkable

import numpy as np
import numpy.typing as npt

from app.errors import ModelNotReady, PoolExhausted

FloatArray = npt.NDArray[np.float32]
IntArray = npt.NDArray[np.int64]
BoolArray = npt.NDArray[np.bool_]

TASKS = ("binary", "multiclass", "multilabel")
VIEW_ARRAYS = ("probs", "embeddings", "mc_probs")


@dataclass(frozen=True, eq=False)
class PoolView:
    """Read-only arrays describing one project's pool, in position order.

    Attributes:
        item_ids: int64 ``[n]`` database id of each position (only services read it).
        labeled: bool ``[n]`` true where a human (or import) label exists.
        blocked: bool ``[n]`` true where the item may not be served now (leased elsewhere).
        labels: int64 ``[n]`` class index of the human label, -1 where unlabeled (multilabel: -1).
        task: ``"binary"``, ``"multiclass"`` or ``"multilabel"``.
        n_classes: number of classes (labels) of the project.
        probs: float32 ``[n, n_classes]`` predicted probabilities of the active checkpoint
            (rows sum to 1, except multilabel where each column is an independent sigmoid).
        embeddings: float32 ``[n, d]`` representation used for diversity/density strategies
            (the checkpoint's embeddings when trained, else the pool's input features).
        mc_probs: float32 ``[t, n, n_classes]`` MC-dropout samples, when the checkpoint has them.
        checkpoint_id: id of the checkpoint the arrays come from, or None (cold start).
    """

    item_ids: IntArray
    labeled: BoolArray
    labels: IntArray
    task: str
    n_classes: int
    blocked: BoolArray | None = None
    probs: FloatArray | None = None
    embeddings: FloatArray | None = None
    mc_probs: FloatArray | None = None
    checkpoint_id: int | None = None
    extras: dict[str, object] = field(default_factory=dict)

    @property
    def n_items(self) -> int:
        """Number of positions in the pool."""
        return int(self.item_ids.shape[0])

    def candidate_mask(self) -> BoolArray:
        """bool ``[n]``: positions a strategy may select (unlabeled and not blocked)."""
        mask = ~self.labeled
        if self.blocked is not None:
            mask &= ~self.blocked
        return mask

    def unlabeled_positions(self) -> IntArray:
        """int64 ``[m]``: positions that may be selected, ascending."""
        return np.flatnonzero(self.candidate_mask()).astype(np.int64)

    @property
    def n_unlabeled(self) -> int:
        """Number of selectable positions."""
        return int(self.candidate_mask().sum())


@dataclass(frozen=True)
class Selection:
    """A strategy's answer, best first.

    Attributes:
        positions: int64 ``[k]`` distinct selectable positions.
        scores: float64 ``[k]`` acquisition score of each (higher = more wanted; NaN when the
            method gives no score, e.g. some ALiPy strategies).
        info: strategy-specific facts worth reporting (e.g. candidate cap, fallbacks).
    """

    positions: IntArray
    scores: npt.NDArray[np.float64]
    info: dict[str, object] = field(default_factory=dict)


@runtime_checkable
class QueryStrategy(Protocol):
    """A query strategy: parameters in the constructor, one ``select`` method.

    ``requires`` names the PoolView arrays it needs (``probs``, ``embeddings``, ``mc_probs``);
    the service raises ``ModelNotReady`` when one is missing.
    """

    requires: ClassVar[frozenset[str]]

    def select(self, view: PoolView, n: int, rng: np.random.Generator) -> Selection:
        """Pick ``n`` selectable positions, best first."""
        ...


def check_n(view: PoolView, n: int) -> IntArray:
    """Validate ``n`` against the pool and return the candidate positions.

    Raises:
        ValueError: if ``n < 1``.
        PoolExhausted: if fewer than ``n`` positions are selectable.
    """
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    candidates = view.unlabeled_positions()
    if n > candidates.shape[0]:
        raise PoolExhausted(
            f"asked for {n} items but only {candidates.shape[0]} are unlabeled and free",
            requested=n,
            available=int(candidates.shape[0]),
        )
    return candidates


def top_k(
    candidates: IntArray, scores: npt.NDArray[np.floating], n: int, rng: np.random.Generator
) -> Selection:
    """Take the ``n`` highest-scoring candidates, ties broken at random under ``rng``.

    Args:
        candidates: int64 ``[m]`` positions.
        scores: float ``[m]`` acquisition score per candidate (higher is better; NaN = lowest).
        n: how many to take.
        rng: seeded generator for tie-breaking (small-text's ``argselect`` idea): ties at the
            cut are drawn uniformly, and equal scores are ordered at random. Costs one
            ``np.partition`` over ``m``, not a permutation of the whole pool.

    Returns:
        Selection of ``n`` positions sorted by descending score.

    Raises:
        PoolExhausted: if ``n > m``.
    """
    m = candidates.shape[0]
    if n > m:
        raise PoolExhausted(
            f"asked for {n} items but only {m} candidates", requested=n, available=m
        )
    s = np.asarray(scores, dtype=np.float64)
    s = np.where(np.isnan(s), -np.inf, s)
    if n < m:  # the n-th largest value splits the pool; ties at it are drawn at random
        kth = np.partition(s, m - n)[m - n]
        above = np.flatnonzero(s > kth)
        ties = np.flatnonzero(s == kth)
        need = n - above.size
        drawn = ties if need >= ties.size else rng.choice(ties, need, replace=False)
        picked = np.concatenate([above, drawn])
    else:
        picked = np.arange(m)
    picked = picked[rng.permutation(picked.size)]  # random order among equal scores
    chosen = picked[np.argsort(-s[picked], kind="stable")]
    return Selection(
        positions=candidates[chosen].astype(np.int64), scores=s[chosen].astype(np.float64)
    )


def require_array(view: PoolView, name: str) -> npt.NDArray[np.generic]:
    """Return the view's optional array ``name``, or fail the way the service would.

    Args:
        view: the pool view.
        name: one of ``"probs"``, ``"embeddings"``, ``"mc_probs"``.

    Returns:
        The array as stored in the view (not copied; callers must not write to it).

    Raises:
        ValueError: if ``name`` is not an optional PoolView array.
        ModelNotReady: if the view does not carry that array (e.g. no trained checkpoint).
    """
    if name not in VIEW_ARRAYS:
        raise ValueError(f"unknown PoolView array {name!r}; expected one of {VIEW_ARRAYS}")
    array: npt.NDArray[np.generic] | None = getattr(view, name)
    if array is None:
        raise ModelNotReady(
            f"this strategy needs {name!r}, which the pool has not got yet", missing=name
        )
    return array
