"""Request training runs and manage model versions (checkpoints)."""

from typing import Any

import numpy as np
import numpy.typing as npt
from pydantic import ValidationError
from sqlalchemy import select, update
from sqlalchemy.orm import Session

from app.errors import Conflict, InvalidInput, NotFound
from app.jobs.runner import JobRunner
from app.ml.metrics import classification_report
from app.models import (
    Annotation,
    Checkpoint,
    Item,
    ItemStatus,
    Job,
    LabelSource,
    Project,
    PseudoLabelReview,
    ReviewStatus,
)
from app.schemas.jobs import TrainRequest
from app.services import pseudo_review, webhooks
from app.services.jobs import create_job, ensure_no_running_training
from app.services.pool_view import checkpoint_array
from app.services.training_negatives import NegativeSettings, positive_only_allowed


def request_training(
    session: Session,
    project: Project,
    body: TrainRequest,
    *,
    runner: JobRunner,
    idempotency_key: str | None,
) -> Job:
    """Queue a training job (202); with the same Idempotency-Key, return the first one.

    Raises:
        Conflict: another training of the project is running, or the labels cannot train a
            classifier yet (fewer than two classes labeled).
    """
    if idempotency_key:
        previous = session.scalar(
            select(Job).where(Job.project_id == project.id, Job.idempotency_key == idempotency_key)
        )
        if previous is not None:
            return previous
    body = with_project_defaults(project, body)
    _check_architecture(project, body)
    ensure_no_running_training(session, project)
    _ensure_trainable(
        session, project, positive_only=positive_only_allowed(
            NegativeSettings.from_params(body.negatives.model_dump()), project.task
        )
    )
    job, _ = create_job(
        session,
        project,
        kind="train",
        params=body.model_dump(mode="json"),
        runner=runner,
        idempotency_key=idempotency_key,
    )
    return job


def with_project_defaults(project: Project, body: TrainRequest) -> TrainRequest:
    """The run's body over the project's ``train_defaults``: fields the run sets win, nested
    objects (``semi_supervised``, ``negatives``) merge key by key.

    Raises:
        InvalidInput: the merged body is not a valid TrainRequest (the defaults were valid
            alone, so a run field conflicts with them), naming the field.
    """
    defaults = project.train_defaults or {}
    if not defaults:
        return body
    merged: dict[str, Any] = dict(defaults)
    for key, value in body.model_dump(mode="json", exclude_unset=True).items():
        base = merged.get(key)
        if isinstance(base, dict) and isinstance(value, dict):
            merged[key] = {**base, **value}
        else:
            merged[key] = value
    try:
        return TrainRequest.model_validate(merged)
    except ValidationError as exc:
        error = exc.errors()[0]
        field = ".".join(str(part) for part in error["loc"]) or "train_defaults"
        raise InvalidInput(
            f"run body and project train_defaults conflict: {error['msg']}", field=field
        ) from None


def _check_architecture(project: Project, body: TrainRequest) -> None:
    """The CNN needs square images (``feature_dim`` a perfect square of a side >= 2).

    Raises:
        InvalidInput: naming ``architecture`` otherwise.
    """
    if body.architecture != "cnn" or project.feature_dim is None:
        return
    side = round(project.feature_dim**0.5)
    if side < 2 or side * side != project.feature_dim:
        raise InvalidInput(
            f"architecture 'cnn' needs square images; this pool has {project.feature_dim} "
            "features per item",
            field="architecture",
        )


def _ensure_trainable(session: Session, project: Project, *, positive_only: bool) -> None:
    """Raise Conflict unless the labels can train a classifier (``positive_only``: one class
    plus PU negatives from the unlabeled pool is enough)."""
    seen: set[str] = set()
    n = 0
    for (labels,) in session.execute(
        select(Item.labels).where(Item.project_id == project.id, Item.status == ItemStatus.LABELED)
    ):
        n += 1
        seen.update(labels or [])
    if project.task != "multilabel" and len(seen) < 2 and not (positive_only and seen):
        raise Conflict(
            f"training needs labels of at least 2 classes; {n} item(s) labeled with {sorted(seen)}",
            code_hint="not_enough_labels",
        )
    if n == 0:
        raise Conflict("training needs at least one labeled item")


def list_checkpoints(session: Session, project: Project) -> list[dict[str, Any]]:
    """Every model version of the project, newest first, with its pseudo-label precision."""
    rows = session.scalars(
        select(Checkpoint)
        .where(Checkpoint.project_id == project.id)
        .order_by(Checkpoint.version.desc())
    ).all()
    counts = pseudo_review.confirmation_counts(session, project.id)
    return [read_checkpoint(project, row, counts.get(row.id)) for row in rows]


def read_checkpoint(
    project: Project, row: Checkpoint, confirmation: dict[str, Any] | None = None
) -> dict[str, Any]:
    """API view of a checkpoint."""
    metrics = row.metrics or {}
    return {
        "id": row.id,
        "version": row.version,
        "active": row.id == project.active_checkpoint_id,
        "metrics": metrics,
        "label_counts": row.label_counts,
        "n_labeled": row.n_labeled,
        "n_pseudo": row.n_pseudo,
        "job_id": row.job_id,
        "created_at": row.created_at,
        "activation": metrics.get("activation"),
        "pseudo_confirmation": confirmation or pseudo_review.summarize(0, 0, 0, 0),
    }


def activate(session: Session, project: Project, version: int) -> dict[str, Any]:
    """Make model ``version`` the active one (roll back or forward), atomically.

    The items' pseudo-labels become that checkpoint's (human labels untouched), in the same
    transaction as the switch.

    Raises:
        NotFound: no such version.
    """
    row = session.scalar(
        select(Checkpoint).where(Checkpoint.project_id == project.id, Checkpoint.version == version)
    )
    if row is None:
        raise NotFound("model version", version)
    project.active_checkpoint_id = row.id
    session.flush()
    apply_pseudo_labels(session, project_id=project.id, checkpoint_id=row.id)
    webhooks.emit_checkpoint_activated(session, row, job_id=None)
    session.flush()
    session.refresh(project)
    return read_checkpoint(
        project, row, pseudo_review.confirmation_counts(session, project.id).get(row.id)
    )


def apply_pseudo_labels(session: Session, *, project_id: int, checkpoint_id: int) -> int:
    """Replace the items' current pseudo-labels with ``checkpoint_id``'s; humans always win.

    Items that carry a human (or imported) label keep it; a pseudo-label that annotators
    rejected is not put back. Returns the number of items pseudo-labeled.
    """
    session.execute(
        update(Item)
        .where(Item.project_id == project_id, Item.status == ItemStatus.PSEUDO)
        .values(status=ItemStatus.UNLABELED, labels=None, label_source=None, label_confidence=None)
        .execution_options(synchronize_session=False)
    )
    rejected = select(PseudoLabelReview.item_id).where(
        PseudoLabelReview.checkpoint_id == checkpoint_id,
        PseudoLabelReview.status == ReviewStatus.REJECTED,
    )
    rows = session.execute(
        select(Annotation.item_id, Annotation.labels, Annotation.confidence)
        .join(Item, Item.id == Annotation.item_id)
        .where(
            Annotation.project_id == project_id,
            Annotation.checkpoint_id == checkpoint_id,
            Annotation.source == LabelSource.PSEUDO,
            Item.status == ItemStatus.UNLABELED,
            Annotation.item_id.not_in(rejected),
        )
    ).all()
    if rows:
        session.execute(
            update(Item),
            [
                {
                    "id": item_id,
                    "status": ItemStatus.PSEUDO,
                    "labels": labels,
                    "label_source": LabelSource.PSEUDO,
                    "label_confidence": confidence,
                }
                for item_id, labels, confidence in rows
            ],
        )
    session.expire_all()
    return len(rows)


def decide_activation(
    *,
    policy: str,
    active: Checkpoint | None,
    metrics: dict[str, Any],
    holdout_positions: npt.NDArray[np.int64],
    holdout_targets: npt.NDArray[Any],
    new_probs: npt.NDArray[Any],
    label_names: list[str],
    task: str,
) -> dict[str, Any]:
    """Whether a new checkpoint replaces the active one, and why.

    With ``policy="if_better"`` both checkpoints are scored (macro-F1, the primary metric:
    robust to class imbalance) on the hold-out items the active one was also validated on:
    the current hold-out rows at positions the active checkpoint scored. That needs the active
    checkpoint to have been validated by the same hashed hold-out rule (``validation ==
    "holdout"`` with the same ``split``); otherwise the checkpoints are not comparable and the
    new one is activated (more labels, no evidence against it). Ties activate the new one.

    Args:
        policy: ``if_better``, ``always`` or ``never``.
        active: the project's active checkpoint (None before the first).
        metrics: the new checkpoint's metrics (``validation``, ``split``).
        holdout_positions: int64 ``[h]`` pool positions of the new checkpoint's hold-out rows.
        holdout_targets: their current human labels (int64 ``[h]`` or multi-hot ``[h, c]``).
        new_probs: the new checkpoint's (calibrated) probabilities of the whole pool ``[n, c]``.
        label_names: class names.
        task: the project's task.

    Returns:
        ``{activated, policy, reason, metric, compared_on, score, active_score,
        previous_checkpoint_id}``; reasons ``no_active_model``, ``policy_always``,
        ``policy_never``, ``not_comparable``, ``not_worse``, ``worse``.
    """
    decision: dict[str, Any] = {
        "policy": policy,
        "metric": "macro_f1",
        "compared_on": 0,
        "score": None,
        "active_score": None,
        "previous_checkpoint_id": active.id if active is not None else None,
    }
    if policy == "never":
        return {**decision, "activated": False, "reason": "policy_never"}
    if active is None:
        return {**decision, "activated": True, "reason": "no_active_model"}
    if policy == "always":
        return {**decision, "activated": True, "reason": "policy_always"}
    active_metrics = active.metrics or {}
    comparable = (
        metrics.get("validation") == "holdout"
        and active_metrics.get("validation") == "holdout"
        and active_metrics.get("split") == metrics.get("split")
    )
    active_probs = checkpoint_array(active, "probs") if comparable else None
    if active_probs is None or active_probs.shape[1] != len(label_names):  # labels were added
        return {**decision, "activated": True, "reason": "not_comparable"}
    shared = holdout_positions < min(active.pool_size, active_probs.shape[0])
    if not shared.any():
        return {**decision, "activated": True, "reason": "not_comparable"}
    positions, targets = holdout_positions[shared], holdout_targets[shared]
    order = np.argsort(positions)  # sorted reads from the memory maps
    new_score = classification_report(
        targets[order], np.asarray(new_probs[positions[order]]), label_names=label_names, task=task
    )["macro_f1"]
    old_score = classification_report(
        targets[order],
        np.asarray(active_probs[positions[order]], dtype=np.float32),
        label_names=label_names,
        task=task,
    )["macro_f1"]
    better = new_score >= old_score
    return {
        **decision,
        "activated": better,
        "reason": "not_worse" if better else "worse",
        "compared_on": int(shared.sum()),
        "score": float(new_score),
        "active_score": float(old_score),
    }
