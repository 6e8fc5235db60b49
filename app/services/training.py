"""Request training runs and manage model versions (checkpoints)."""

from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from app.errors import Conflict, NotFound
from app.jobs.runner import JobRunner
from app.models import Checkpoint, Item, ItemStatus, Job, Project
from app.schemas.jobs import TrainRequest
from app.services.jobs import create_job, ensure_no_running_training


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
    ensure_no_running_training(session, project)
    _ensure_trainable(session, project)
    job, _ = create_job(
        session,
        project,
        kind="train",
        params=body.model_dump(mode="json"),
        runner=runner,
        idempotency_key=idempotency_key,
    )
    return job


def _ensure_trainable(session: Session, project: Project) -> None:
    seen: set[str] = set()
    n = 0
    for (labels,) in session.execute(
        select(Item.labels).where(Item.project_id == project.id, Item.status == ItemStatus.LABELED)
    ):
        n += 1
        seen.update(labels or [])
    if project.task != "multilabel" and len(seen) < 2:
        raise Conflict(
            f"training needs labels of at least 2 classes; {n} item(s) labeled with {sorted(seen)}",
            code_hint="not_enough_labels",
        )
    if n == 0:
        raise Conflict("training needs at least one labeled item")


def list_checkpoints(session: Session, project: Project) -> list[dict[str, Any]]:
    """Every model version of the project, newest first."""
    rows = session.scalars(
        select(Checkpoint).where(Checkpoint.project_id == project.id).order_by(Checkpoint.version.desc())
    ).all()
    return [read_checkpoint(project, row) for row in rows]


def read_checkpoint(project: Project, row: Checkpoint) -> dict[str, Any]:
    """API view of a checkpoint."""
    return {
        "id": row.id,
        "version": row.version,
        "active": row.id == project.active_checkpoint_id,
        "metrics": row.metrics,
        "label_counts": row.label_counts,
        "n_labeled": row.n_labeled,
        "n_pseudo": row.n_pseudo,
        "job_id": row.job_id,
        "created_at": row.created_at,
    }


def activate(session: Session, project: Project, version: int) -> dict[str, Any]:
    """Make model ``version`` the active one (roll back or forward).

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
    session.refresh(project)
    return read_checkpoint(project, row)
