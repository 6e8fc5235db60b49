"""Scheduled retraining: after every N new human labels (debounced) and/or on a cron.

A scheduler loop (``app/jobs/scheduler.py``) calls :func:`due_reason` and :func:`trigger` for
each enabled schedule. The watermarks (``labels_seen``, ``next_cron_at``) are moved with
compare-and-set updates in the transaction that creates the job, so any number of loops
(every API process and worker runs one) start exactly one job per trigger.
"""

import logging
from datetime import UTC, datetime, timedelta
from typing import Any

from croniter import croniter
from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from app.errors import AppError, InvalidInput, NotFound
from app.jobs.runner import JobRunner
from app.models import Annotation, Job, LabelSource, Project, TrainingSchedule
from app.schemas.jobs import TrainRequest
from app.schemas.schedules import ScheduleWrite
from app.services import training
from app.services.clock import as_utc
from app.services.queue import now_utc

log = logging.getLogger(__name__)


def human_label_stats(session: Session, project_id: int) -> tuple[int, datetime | None]:
    """(number of human annotations, time of the latest) of a project."""
    count, latest = session.execute(
        select(func.count(Annotation.id), func.max(Annotation.created_at)).where(
            Annotation.project_id == project_id, Annotation.source == LabelSource.HUMAN
        )
    ).one()
    return int(count or 0), as_utc(latest)


def next_cron_time(expression: str, after: datetime) -> datetime:
    """The first firing of a 5-field cron ``expression`` strictly after ``after`` (UTC)."""
    return as_utc(croniter(expression, after.astimezone(UTC)).get_next(datetime))  # type: ignore[return-value]


def put_schedule(session: Session, project: Project, body: ScheduleWrite) -> TrainingSchedule:
    """Create or replace the project's schedule.

    A new schedule counts labels from now on (``labels_seen`` = current human labels); a
    replaced one keeps its label watermark; the cron's next firing is recomputed.

    Raises:
        InvalidInput: neither ``every_n_labels`` nor ``cron`` is given (field
            ``every_n_labels``).
    """
    if body.every_n_labels is None and body.cron is None:
        raise InvalidInput(
            "a schedule needs every_n_labels, cron, or both", field="every_n_labels"
        )
    now = now_utc()
    row = session.get(TrainingSchedule, project.id)
    if row is None:
        seen, _ = human_label_stats(session, project.id)
        row = TrainingSchedule(project_id=project.id, labels_seen=seen, created_at=now)
        session.add(row)
    row.enabled = body.enabled
    row.every_n_labels = body.every_n_labels
    row.cron = body.cron
    row.debounce_seconds = body.debounce_seconds
    row.train = body.train_body()
    row.next_cron_at = next_cron_time(body.cron, now) if body.cron else None
    row.updated_at = now
    session.flush()
    return row


def get_schedule(session: Session, project: Project) -> TrainingSchedule:
    """The project's schedule.

    Raises:
        NotFound: the project has none.
    """
    row = session.get(TrainingSchedule, project.id)
    if row is None:
        raise NotFound("schedule of project", project.id)
    return row


def delete_schedule(session: Session, project: Project) -> None:
    """Remove the project's schedule (NotFound if there is none)."""
    session.delete(get_schedule(session, project))
    session.flush()


def read_schedule(session: Session, row: TrainingSchedule) -> dict[str, Any]:
    """API view: the row plus how many human labels arrived since the last run."""
    count, _ = human_label_stats(session, row.project_id)
    return {
        "project_id": row.project_id,
        "enabled": row.enabled,
        "every_n_labels": row.every_n_labels,
        "cron": row.cron,
        "debounce_seconds": row.debounce_seconds,
        "train": row.train,
        "labels_seen": row.labels_seen,
        "new_labels": max(count - row.labels_seen, 0),
        "next_cron_at": as_utc(row.next_cron_at),
        "last_triggered_at": as_utc(row.last_triggered_at),
        "last_job_id": row.last_job_id,
        "last_reason": row.last_reason,
        "created_at": as_utc(row.created_at),
        "updated_at": as_utc(row.updated_at),
    }


def enabled_project_ids(session: Session) -> list[int]:
    """Projects with an enabled schedule."""
    return list(
        session.scalars(
            select(TrainingSchedule.project_id).where(TrainingSchedule.enabled.is_(True))
        ).all()
    )


def due_reason(session: Session, row: TrainingSchedule, now: datetime) -> str | None:
    """``"labels"``, ``"cron"`` or None: whether the schedule should start a run now.

    Labels are due when ``every_n_labels`` new human labels arrived since the last run *and*
    none arrived in the last ``debounce_seconds`` (so a burst starts one job, when it ends).
    """
    if not row.enabled:
        return None
    if row.every_n_labels:
        count, latest = human_label_stats(session, row.project_id)
        quiet = latest is None or now - latest >= timedelta(seconds=row.debounce_seconds)
        if count - row.labels_seen >= row.every_n_labels and quiet:
            return "labels"
    due_at = as_utc(row.next_cron_at)
    if row.cron and due_at is not None and due_at <= now:
        return "cron"
    return None


def trigger(
    session: Session, row: TrainingSchedule, reason: str, now: datetime, *, runner: JobRunner
) -> Job | None:
    """Move the schedule's watermark and queue one training; None if another loop won.

    A cron firing is consumed even when no job can start (a training is running, or too few
    labels): cron runs are skipped, not piled up. A label trigger waits for the running
    training and fires on a later tick.
    """
    project = session.get(Project, row.project_id)
    if project is None:
        return None
    count, _ = human_label_stats(session, row.project_id)
    values: dict[str, Any] = {"last_triggered_at": now, "last_reason": reason}
    where = [TrainingSchedule.project_id == row.project_id]
    if reason == "cron":
        where.append(TrainingSchedule.next_cron_at == row.next_cron_at)
        values["next_cron_at"] = next_cron_time(row.cron or "", now)
        values["labels_seen"] = count
    else:
        where.append(TrainingSchedule.labels_seen == row.labels_seen)
        values["labels_seen"] = count
    due_at = as_utc(row.next_cron_at)
    mark = due_at.isoformat() if reason == "cron" and due_at is not None else str(count)
    key = f"schedule:{reason}:{mark}"
    try:
        with session.begin_nested():
            won = session.execute(update(TrainingSchedule).where(*where).values(**values))
            if won.rowcount != 1:  # type: ignore[attr-defined]
                return None
            job = training.request_training(
                session, project, TrainRequest.model_validate(row.train), runner=runner,
                idempotency_key=key[:200],
            )
            session.execute(
                update(TrainingSchedule)
                .where(TrainingSchedule.project_id == row.project_id)
                .values(last_job_id=job.id)
            )
    except AppError as exc:  # a training is running, or the labels cannot train yet
        log.info("schedule of project %s (%s) did not start a job: %s", row.project_id, reason,
                 exc.message)
        if reason == "cron":  # consume the firing anyway
            session.execute(update(TrainingSchedule).where(*where).values(**values))
        return None
    log.info("schedule of project %s started training job %s (%s)", row.project_id, job.id,
             reason)
    return job
