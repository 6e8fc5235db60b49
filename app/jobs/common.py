"""Job bookkeeping in short transactions: start, progress with cancellation, finish, fail."""

import logging
import time
import traceback
from collections.abc import Callable
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.orm import Session, sessionmaker

from app.models import Job, JobStatus
from app.services.queue import now_utc

log = logging.getLogger(__name__)


class JobCancelled(Exception):
    """Raised inside a job body when a cancel was requested."""


def claim(sm: sessionmaker[Session], job_id: int) -> Job | None:
    """Move a queued job to running; None if it is not queued (cancelled, taken, gone)."""
    with sm() as session, session.begin():
        now = now_utc()
        result = session.execute(
            update(Job)
            .where(Job.id == job_id, Job.status == JobStatus.QUEUED)
            .values(status=JobStatus.RUNNING, started_at=now, heartbeat_at=now, progress=0.0)
        )
        if result.rowcount != 1:  # type: ignore[attr-defined]
            return None
        job = session.get(Job, job_id)
        if job is not None:
            session.expunge(job)
        return job


class Progress:
    """Writes progress (throttled) and raises JobCancelled when a cancel was requested."""

    def __init__(self, sm: sessionmaker[Session], job_id: int, min_interval: float = 1.0) -> None:
        self._sm = sm
        self._job_id = job_id
        self._min_interval = min_interval
        self._last = 0.0

    def __call__(self, fraction: float, message: str = "", *, force: bool = False) -> None:
        now = time.monotonic()
        if not force and now - self._last < self._min_interval:
            return
        self._last = now
        with self._sm() as session, session.begin():
            job = session.get(Job, self._job_id)
            if job is None:
                raise JobCancelled("job row disappeared")
            if job.cancel_requested:
                raise JobCancelled("cancel requested")
            job.progress = max(0.0, min(1.0, float(fraction)))
            job.message = message[:500] or job.message
            job.heartbeat_at = now_utc()


def fail(sm: sessionmaker[Session], job_id: int, exc: BaseException) -> None:
    """Mark a job failed (or cancelled) in a new session; never leaves it running."""
    cancelled = isinstance(exc, JobCancelled)
    if not cancelled:
        log.error("job %s failed", job_id, exc_info=exc)
    detail = "".join(traceback.format_exception_only(type(exc), exc)).strip()
    with sm() as session, session.begin():
        job = session.get(Job, job_id)
        if job is None:
            return
        job.status = JobStatus.CANCELLED if cancelled else JobStatus.FAILED
        job.error = None if cancelled else detail[:2000]
        job.message = "cancelled" if cancelled else "failed"
        job.finished_at = now_utc()


def run_guarded(
    sm: sessionmaker[Session], job_id: int, body: Callable[[Job, Progress], None]
) -> None:
    """Claim the job, run ``body``, and record failure or cancellation if it raises."""
    job = claim(sm, job_id)
    if job is None:
        return
    try:
        body(job, Progress(sm, job_id))
    except BaseException as exc:  # noqa: BLE001 - recorded on the job, then re-raised if fatal
        fail(sm, job_id, exc)
        if not isinstance(exc, Exception):
            raise


def finish(session: Session, job_id: int, result: dict[str, Any], message: str) -> None:
    """Mark a job succeeded inside the caller's transaction."""
    job = session.get(Job, job_id)
    if job is None:
        return
    job.status = JobStatus.SUCCEEDED
    job.progress = 1.0
    job.result = result
    job.message = message
    job.finished_at = now_utc()


def recover(sm: sessionmaker[Session]) -> list[int]:
    """At start-up: fail jobs left running by a dead process; return queued job ids to resubmit."""
    with sm() as session, session.begin():
        session.execute(
            update(Job)
            .where(Job.status == JobStatus.RUNNING)
            .values(
                status=JobStatus.FAILED,
                error="worker restarted while the job was running",
                finished_at=now_utc(),
            )
        )
        return list(session.scalars(select(Job.id).where(Job.status == JobStatus.QUEUED)).all())
