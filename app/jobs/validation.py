"""A train job's validation split, calibration and metrics (glue between the snapshot and ml).

The split is decided by :func:`app.ml.evaluation.plan_validation` on the labeled items' ids. In
hold-out mode the held-out items train nothing: they are left out of the labeled rows *and* of
the unlabeled rows (no pseudo-label, no consistency loss on them), so a later checkpoint can be
compared with this one on them. In CV and train mode every item trains the checkpoint.
"""

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from app.config import Settings
from app.ml.calibration import apply_temperature
from app.ml.evaluation import (
    ValidationPlan,
    calibrate_and_score,
    cross_validated_probs,
    plan_validation,
)
from app.sampling.splits import hashed_holdout

FitPredict = Callable[[npt.NDArray[np.int64], npt.NDArray[np.int64]], npt.NDArray[Any]]


@dataclass(frozen=True)
class JobSplit:
    """Where each pool row goes in a train job.

    Attributes:
        plan: the validation plan over the labeled rows.
        train_rows: int64 rows of the snapshot's labeled arrays that train the checkpoint.
        train_positions: int64 pool positions of those rows.
        holdout_positions: int64 pool positions of the held-out labeled rows (hold-out mode).
        unlabeled_positions: int64 pool positions offered to training as unlabeled data.
    """

    plan: ValidationPlan
    train_rows: npt.NDArray[np.int64]
    train_positions: npt.NDArray[np.int64]
    holdout_positions: npt.NDArray[np.int64]
    unlabeled_positions: npt.NDArray[np.int64]


def split_for(
    *,
    pool_size: int,
    positions: npt.NDArray[np.int64],
    item_ids: npt.NDArray[np.int64],
    labeled_positions: npt.NDArray[np.int64],
    targets: npt.NDArray[Any],
    task: str,
    settings: Settings,
) -> JobSplit:
    """Plan the split of a snapshot (positions/item_ids aligned; ``labeled_positions`` with
    ``targets`` in the same order)."""
    id_by_position = np.full(pool_size, -1, dtype=np.int64)
    id_by_position[positions] = item_ids
    plan = plan_validation(
        id_by_position[labeled_positions],
        targets,
        task=task,
        fraction=settings.validation_fraction,
        min_holdout=settings.validation_min_holdout,
    )
    unlabeled = np.setdiff1d(np.arange(pool_size, dtype=np.int64), labeled_positions)
    if plan.mode == "holdout":
        keep = ~hashed_holdout(id_by_position[unlabeled], fraction=settings.validation_fraction)
        unlabeled = unlabeled[keep & (id_by_position[unlabeled] >= 0)]
    train_rows = plan.train_rows
    return JobSplit(
        plan=plan,
        train_rows=train_rows,
        train_positions=labeled_positions[train_rows],
        holdout_positions=labeled_positions[plan.holdout_rows],
        unlabeled_positions=unlabeled.astype(np.int64),
    )


def evaluate(
    split: JobSplit,
    *,
    pool_probs: npt.NDArray[Any],
    targets: npt.NDArray[Any],
    label_names: list[str],
    task: str,
    fit_predict: FitPredict,
    seed: int,
) -> tuple[float, dict[str, Any]]:
    """Temperature and metrics of a checkpoint on human labels.

    Hold-out: the checkpoint's own (uncalibrated) pool probabilities at the held-out rows. CV:
    out-of-fold probabilities from ``fit_predict`` (supervised fits on the folds), whose
    temperature is then applied to the final net. Train: in-sample, uncalibrated (``T = 1``).

    Returns:
        ``(temperature, metrics)`` with ``validation``, ``n_validation``, ``cv_folds``,
        ``split`` and the keys of :func:`app.ml.evaluation.calibrate_and_score`.
    """
    plan = split.plan
    n_classes = len(label_names)
    if plan.mode == "holdout":
        probs = np.asarray(pool_probs[split.holdout_positions])
        y = targets[plan.holdout_rows]
    elif plan.mode == "cv":
        probs = cross_validated_probs(
            targets, fit_predict, task=task, n_classes=n_classes, n_folds=plan.cv_folds, seed=seed
        )
        y = targets
    else:
        probs = np.asarray(pool_probs[split.train_positions])
        y = targets[split.train_rows]
    temperature, report = calibrate_and_score(
        probs, y, label_names=label_names, task=task, seed=seed, fit=plan.mode != "train"
    )
    metrics = {
        **report,
        "validation": plan.mode,
        "n_validation": int(report["n"]),
        "cv_folds": plan.cv_folds,
        "split": plan.split,
    }
    return temperature, metrics


def calibrate(probs: npt.NDArray[Any], temperature: float, *, task: str) -> npt.NDArray[Any]:
    """Apply the temperature to pool probabilities ``[n, c]`` or MC samples ``[t, n, c]``
    (keeping float16 samples float16)."""
    multilabel = task == "multilabel"
    if temperature == 1.0:
        return probs
    if probs.ndim == 3:
        out = np.stack([apply_temperature(s, temperature, multilabel=multilabel) for s in probs])
        return out.astype(probs.dtype)
    return apply_temperature(probs, temperature, multilabel=multilabel)


def checkpoint_metrics(
    trainer: dict[str, Any],
    evaluation: dict[str, Any],
    split: JobSplit,
    *,
    label_names: list[str],
    pseudo_method: str,
) -> dict[str, Any]:
    """A checkpoint's metrics: the trainer's, with the validation on human labels
    (``evaluation``) on top; the trainer's own internal scores move to
    ``internal_validation``; the label counts it saw (human, pseudo)."""
    rest = dict(trainer)
    internal_keys = ("accuracy", "macro_f1", "validation", "n_validation", "cv_folds")
    internal = {k: rest.pop(k, None) for k in internal_keys}
    n_pseudo = int(rest.get("n_pseudo", 0))
    per_class = list(rest.get("pseudo_per_class") or [0] * len(label_names))
    return {
        **rest,
        **evaluation,
        "internal_validation": internal,
        "n_human": int(split.train_rows.size),
        "n_human_validation": int(split.holdout_positions.size),
        "label_counts": {
            "human": int(split.train_rows.size),
            "pseudo": n_pseudo,
            "pseudo_by_class": {n: int(c) for n, c in zip(label_names, per_class, strict=True)},
        },
        "pseudo_method": pseudo_method if n_pseudo else None,
    }
