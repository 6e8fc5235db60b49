"""Stratified train/validation splits over labeled positions (numpy only)."""

import numpy as np
import numpy.typing as npt

from app.strategies.base import IntArray


def stratified_split(
    y: IntArray, *, fraction: float, rng: np.random.Generator
) -> tuple[IntArray, IntArray]:
    """Split labeled rows into train and validation, class by class.

    Each class with ``count`` rows sends ``min(round(fraction * count), count - 1)`` randomly
    chosen rows to validation and the rest to train, so every class keeps at least one training
    example and singletons never reach validation (``round`` is Python's, half to even). This is
    the per-class hold-out of scikit-learn's ``train_test_split(stratify=y)`` without its
    "each class needs two members" failure.

    Args:
        y: int64 ``[n]`` class index of each row (``>= 0``); classes need not be contiguous.
        fraction: share of each class to hold out, in ``[0, 1)``.
        rng: seeded generator; the same state gives the same split.

    Returns:
        ``(train_idx, val_idx)``: int64 ``[n_train]`` and ``[n_val]`` row indices into ``y``,
        each ascending, disjoint, together covering ``0..n-1``.

    Raises:
        ValueError: if ``y`` is not a 1-D integer array of non-negative values or ``fraction``
            is outside ``[0, 1)``.
    """
    y = np.asarray(y)
    if y.ndim != 1 or (y.size and not np.issubdtype(y.dtype, np.integer)):
        raise ValueError(f"y must be a 1-D integer array, got shape {y.shape} dtype {y.dtype}")
    if y.size and int(y.min()) < 0:
        raise ValueError("y must hold class indices >= 0")
    if not 0.0 <= fraction < 1.0:
        raise ValueError(f"fraction must be in [0, 1), got {fraction}")
    n = y.shape[0]
    if n == 0:
        empty = np.zeros(0, dtype=np.int64)
        return empty, empty.copy()

    order = rng.permutation(n)  # random order inside each class
    by_class = order[np.argsort(y[order], kind="stable")]  # rows grouped by class, shuffled
    _, inverse, counts = np.unique(y[by_class], return_inverse=True, return_counts=True)
    starts = np.concatenate(([0], np.cumsum(counts)[:-1]))
    rank = np.arange(n) - starts[inverse]  # position of each row inside its class group
    n_val = np.minimum(np.rint(fraction * counts).astype(np.int64), counts - 1)
    in_val = rank < n_val[inverse]
    val_idx = np.sort(by_class[in_val]).astype(np.int64)
    train_idx = np.sort(by_class[~in_val]).astype(np.int64)
    return train_idx, val_idx


def hashed_holdout(item_ids: IntArray, *, fraction: float, salt: int = 0) -> npt.NDArray[np.bool_]:
    """Deterministic hold-out membership by a hash of each item id (not of its row).

    An item is held out when ``splitmix64(item_id ^ salt) / 2**64 < fraction``. Membership
    depends on the id alone, so an item stays on the same side across retrains however many
    labels arrive, and two checkpoints can be compared on the held-out items both were validated
    on (the rule behind TensorFlow Extended's hash-based splits and "Hands-On ML"'s
    ``test_set_check``). splitmix64 is the finalizer of Steele, Lea & Flood (2014), "Fast
    splittable pseudorandom number generators", OOPSLA: consecutive ids map to unrelated values.

    Args:
        item_ids: int64 ``[n]`` item ids (any integers; negative ones are hashed as uint64).
        fraction: expected share held out, in ``[0, 1]``.
        salt: mixed into the hash; another salt draws another split.

    Returns:
        bool ``[n]``, true for held-out items.

    Raises:
        ValueError: if ``item_ids`` is not 1-D integer or ``fraction`` is outside ``[0, 1]``.
    """
    ids = np.asarray(item_ids)
    if ids.ndim != 1 or (ids.size and not np.issubdtype(ids.dtype, np.integer)):
        raise ValueError(f"item_ids must be a 1-D integer array, got {ids.shape} {ids.dtype}")
    if not 0.0 <= fraction <= 1.0:
        raise ValueError(f"fraction must be in [0, 1], got {fraction}")
    with np.errstate(over="ignore"):
        z = ids.astype(np.int64).view(np.uint64) ^ np.uint64(salt & 0xFFFFFFFFFFFFFFFF)
        z = z + np.uint64(0x9E3779B97F4A7C15)
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        z = z ^ (z >> np.uint64(31))
    unit = (z >> np.uint64(11)).astype(np.float64) / float(1 << 53)  # [n] uniform in [0, 1)
    return unit < fraction
