"""Create, read and cancel background jobs; submit them only after the commit."""

from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from app.errors import Conflict, NotFound
from app.jobs.runner import JobRunner
from app.models import Job, JobStatus, Project
from app.services.queue import now_utc


def after_commit(session: Session, callback: Any) -> None:
    """Run ``callback()`` once the request's transaction has committed."""
    session.info.setdefault("after_commit", []).append(callback)


def create_job(
    session: Session,
    project: Project,
    *,
    kind: str,
    params: dict[str, Any],
    runner: JobRunner,
    idempotency_key: str | None = None,
) -> tuple[Job, bool]:
    """Insert a queued job and submit it after commit; returns (job, created).

    A repeated ``idempotency_key`` returns the job it created first. The database holds at
    most one queued/running training per project (a partial unique index), so two processes
    racing past :func:`ensure_no_running_training` cannot both start one.

    Raises:
        Conflict: ``kind="train"`` and another training of the project is queued or running.
    """
    if idempotency_key:
        previous = session.scalar(
            select(Job).where(Job.project_id == project.id, Job.idempotency_key == idempotency_key)
        )
        if previous is not None:
            return previous, False
    job = Job(
        project_id=project.id,
        kind=kind,
        status=JobStatus.QUEUED,
        progress=0.0,
        params=params,
        result={},
        idempotency_key=idempotency_key,
        created_at=now_utc(),
    )
    try:
        with session.begin_nested():  # a lost race rolls back this insert only
            session.add(job)
            session.flush()
    except IntegrityError:
        if idempotency_key:
            previous = session.scalar(
                select(Job).where(
                    Job.project_id == project.id, Job.idempotency_key == idempotency_key
                )
            )
            if previous is not None:  # a concurrent retry with the same key won
                return previous, False
        if kind == "train":
            ensure_no_running_training(session, project)  # raises Conflict naming the job
        raise
    job_id = job.id
    after_commit(session, lambda: runner.submit(kind, job_id))
    return job, True


def ensure_no_running_training(session: Session, project: Project) -> None:
    """At most one training per project at a time.

    Raises:
        Conflict: a training job of this project is queued or running.
    """
    busy = session.scalar(
        select(Job.id).where(
            Job.project_id == project.id,
            Job.kind == "train",
            Job.status.in_([JobStatus.QUEUED, JobStatus.RUNNING]),
        )
    )
    if busy is not None:
        raise Conflict(f"training job {busy} of this project is still running", job_id=busy)


def get_job(session: Session, job_id: int) -> Job:
    """A job by id, or NotFound."""
    job = session.get(Job, job_id)
    if job is None:
        raise NotFound("job", job_id)
    return job


def list_jobs(session: Session, project: Project, limit: int = 50) -> list[Job]:
    """A project's jobs, newest first."""
    return list(
        session.scalars(
            select(Job).where(Job.project_id == project.id).order_by(Job.id.desc()).limit(limit)
        ).all()
    )


def cancel_job(session: Session, job: Job) -> Job:
    """Cancel a queued job now, or ask a running one to stop at its next progress report.

    Raises:
        Conflict: the job already finished.
    """
    if job.status in JobStatus.FINISHED:
        raise Conflict(f"job {job.id} already {job.status}", status=job.status)
    job.cancel_requested = True
    if job.status == JobStatus.QUEUED:
        job.status = JobStatus.CANCELLED
        job.message = "cancelled"
        job.finished_at = now_utc()
    session.flush()
    return job
