"""Negative ("not c") training rows and the loss terms that learn from them.

A negative row says only that an item is *not* of class ``c``: an annotator confirmed a mined
negative ("is this really not a c?" -> yes), or a positive-only (PU) project drew it from the
unlabeled pool. How such a row enters the loss depends on the task:

- **binary**: it is exactly the other class, since for a two-way softmax
  ``-log(1 - p_c) = -log p_(1-c)``; it becomes a plain label of the other class.
- **multiclass**: the complementary-label term ``-log(1 - p_c)`` ("negative learning", Kim et
  al. 2019, "NLNL: Negative Learning for Noisy Labels", ICCV; complementary labels: Ishida et
  al. 2017, "Learning from Complementary Labels", NeurIPS). It pushes probability mass away
  from ``c`` without claiming which other class the item has.
- **multilabel**: a masked one-vs-rest term, sigmoid binary cross-entropy on column ``c`` with
  target 0 while every other column is unobserved (no loss).

Rows are tagged by a boolean ``complementary`` mask next to ordinary targets, so class indices
stay in ``[0, n_classes)`` and a stray ``-1`` is never read as "not class 0".
"""

from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
import torch
from torch.nn import functional as F  # noqa: N812

from app.strategies.base import FloatArray, IntArray

BoolArray = npt.NDArray[np.bool_]


@dataclass(frozen=True, eq=False)
class NegativeRows:
    """Training rows known not to be of a class.

    Attributes:
        x: float32 ``[m, d]`` input features of the rows.
        classes: int64 ``[m]`` the class each row is *not* (in ``[0, n_classes)``).
        weights: float32 ``[m]`` loss weight of each row (a human label weighs 1).
    """

    x: FloatArray
    classes: IntArray
    weights: FloatArray

    def __len__(self) -> int:
        """Number of negative rows."""
        return int(self.classes.shape[0])

    def check(self, dim: int, n_classes: int) -> None:
        """Validate shapes and values against the training data.

        Raises:
            ValueError: mismatched lengths, wrong feature dimension, a class outside
                ``[0, n_classes)``, or weights that are negative or not finite.
        """
        m = len(self)
        if self.x.ndim != 2 or self.x.shape != (m, dim):
            raise ValueError(f"negative rows must have shape [{m}, {dim}], got {self.x.shape}")
        if self.weights.shape != (m,):
            raise ValueError(f"negative weights must have shape ({m},), got {self.weights.shape}")
        if m and (int(self.classes.min()) < 0 or int(self.classes.max()) >= n_classes):
            raise ValueError(f"negative classes must be in [0, {n_classes})")
        if not np.isfinite(self.weights).all() or (self.weights < 0).any():
            raise ValueError("negative weights must be finite and >= 0")
        if m and not np.isfinite(self.x).all():
            raise ValueError("negative rows have non-finite features")


def as_complementary(mask: npt.ArrayLike | None, n_rows: int) -> BoolArray:
    """bool ``[n_rows]``; all False when ``mask`` is None.

    Raises:
        ValueError: ``mask`` has another shape.
    """
    if mask is None:
        return np.zeros(n_rows, dtype=bool)
    arr = np.asarray(mask, dtype=bool)
    if arr.shape != (n_rows,):
        raise ValueError(f"complementary must have shape ({n_rows},), got {arr.shape}")
    return arr


def training_rows(
    rows: NegativeRows, task: str, n_classes: int
) -> tuple[FloatArray, npt.NDArray[Any], FloatArray, BoolArray]:
    """Encode negative rows as ``(x, y, weights, complementary)`` for :func:`per_row_loss`.

    Args:
        rows: the negative rows (``m`` of them).
        task: ``"binary"``, ``"multiclass"`` or ``"multilabel"``.
        n_classes: number of outputs of the net.

    Returns:
        ``x`` float32 ``[m, d]``; ``y`` int64 ``[m]`` (binary: the other class; multiclass: the
        excluded class) or float32 ``[m, n_classes]`` one-hot of the excluded class
        (multilabel); ``weights`` float32 ``[m]``; ``complementary`` bool ``[m]`` (False for
        binary, whose rows are plain labels, True otherwise).
    """
    classes = rows.classes.astype(np.int64)
    if task == "binary":
        return rows.x, 1 - classes, rows.weights, np.zeros(len(rows), dtype=bool)
    if task == "multilabel":
        y = np.zeros((len(rows), n_classes), dtype=np.float32)
        y[np.arange(len(rows)), classes] = 1.0
        return rows.x, y, rows.weights, np.ones(len(rows), dtype=bool)
    return rows.x, classes, rows.weights, np.ones(len(rows), dtype=bool)


def append_negatives(
    x: FloatArray,
    y: npt.NDArray[Any],
    weights: FloatArray,
    rows: NegativeRows,
    *,
    task: str,
    n_classes: int,
) -> tuple[FloatArray, npt.NDArray[Any], FloatArray, BoolArray]:
    """Labeled rows ``(x [n, d], y, weights [n])`` plus the negative rows, with the
    ``complementary`` mask (bool ``[n + m]``) that :func:`per_row_loss` reads.

    Raises:
        ValueError: the negative rows do not fit the labeled rows (see :meth:`NegativeRows.check`).
    """
    rows.check(x.shape[1], n_classes)
    x_neg, y_neg, w_neg, comp_neg = training_rows(rows, task, n_classes)
    return (
        np.concatenate([x, x_neg.astype(np.float32)]),
        np.concatenate([y, y_neg.astype(y.dtype)]),
        np.concatenate([weights, w_neg.astype(np.float32)]),
        np.concatenate([np.zeros(x.shape[0], dtype=bool), comp_neg]),
    )


def complementary_class_totals(
    y: IntArray, weights: FloatArray, complementary: BoolArray, n_classes: int
) -> npt.NDArray[np.float64]:
    """float64 ``[n_classes]`` weighted counts of the ordinary (non-complementary) rows, the
    class frequencies that balanced class weighting divides by."""
    keep = ~complementary
    return np.bincount(y[keep], weights=weights[keep], minlength=n_classes).astype(np.float64)


def per_row_loss(
    logits: torch.Tensor,
    target: torch.Tensor,
    task: str,
    complementary: torch.Tensor | None = None,
) -> torch.Tensor:
    """Loss of each row of a batch, float ``[b]``.

    Ordinary rows: softmax cross-entropy (``target`` int64 ``[b]``) or the mean sigmoid binary
    cross-entropy over the columns (multilabel, ``target`` float ``[b, c]`` multi-hot).
    Complementary rows (``complementary[i]`` True): ``-log(1 - p_target)`` for softmax tasks,
    computed stably as ``logsumexp(all logits) - logsumexp(logits without the target)``; for
    multilabel ``softplus(logit_c)`` (BCE with target 0) averaged over the columns marked 1.

    Args:
        logits: float ``[b, c]`` outputs of the net.
        target: int64 ``[b]`` class indices or float ``[b, c]`` multi-hot (see above).
        task: ``"binary"``, ``"multiclass"`` or ``"multilabel"``.
        complementary: bool ``[b]`` or None (no complementary rows).
    """
    if task == "multilabel":
        ordinary = F.binary_cross_entropy_with_logits(logits, target, reduction="none").mean(1)
        if complementary is None or not bool(complementary.any()):
            return ordinary
        excluded = (F.softplus(logits) * target).sum(1) / target.sum(1).clamp_min(1.0)
        return torch.where(complementary, excluded, ordinary)
    ordinary = F.cross_entropy(logits, target, reduction="none")
    if complementary is None or not bool(complementary.any()):
        return ordinary
    hit = F.one_hot(target, logits.shape[1]).bool()
    rest = torch.logsumexp(logits.masked_fill(hit, float("-inf")), dim=1)
    excluded = torch.logsumexp(logits, dim=1) - rest
    return torch.where(complementary, excluded, ordinary)
