"""Job bookkeeping in short transactions: claim, progress with cancellation, heartbeat, finish,
fail, and the reaper that fails jobs whose worker died.

Every write is a conditional update on the job's status, so a job a reaper already failed (its
worker looked dead) can never be finished afterwards, and two workers never run one job.
"""

import logging
import os
import re
import socket
import threading
import time
import traceback
from collections.abc import Callable
from datetime import timedelta
from typing import Any

from sqlalchemy import and_, or_, select, update
from sqlalchemy.orm import Session, sessionmaker

from app.models import Job, JobStatus
from app.services import webhooks
from app.services.queue import now_utc

log = logging.getLogger(__name__)

LOG_TAIL_LINES = 50
MAX_EPOCH_ENTRIES = 2000
# "<stage>: epoch <e>/<n>, loss <x>", the learners' progress message (app/ml/train.py)
_EPOCH_MESSAGE = re.compile(
    r"^(?P<stage>[^:]+): epoch (?P<epoch>\d+)/(?P<n_epochs>\d+), loss (?P<loss>[-+0-9.eEinfa]+)"
)


class JobCancelled(Exception):
    """Raised inside a job body when a cancel was requested."""


class JobLost(Exception):
    """Raised when the job is no longer ours (a reaper failed it, or it finished elsewhere)."""


def worker_name() -> str:
    """``host:pid`` of this process, recorded on the jobs it claims."""
    return f"{socket.gethostname()}:{os.getpid()}"[:200]


def claim(sm: sessionmaker[Session], job_id: int) -> Job | None:
    """Move a queued job to running; None if it is not queued (cancelled, taken, gone)."""
    with sm() as session, session.begin():
        now = now_utc()
        result = session.execute(
            update(Job)
            .where(Job.id == job_id, Job.status == JobStatus.QUEUED)
            .values(
                status=JobStatus.RUNNING, started_at=now, heartbeat_at=now, progress=0.0,
                worker=worker_name(), epoch_metrics=[], log_tail=None,
            )
        )
        if result.rowcount != 1:  # type: ignore[attr-defined]
            return None
        job = session.get(Job, job_id)
        if job is not None:
            session.expunge(job)
        return job


class Progress:
    """Writes progress, per-epoch metrics and the log tail; raises JobCancelled on a cancel.

    Calls are cheap: every message is kept in memory (the log tail and, when it is a learner's
    ``"<stage>: epoch e/n, loss x"`` line, an epoch entry) and written with the progress at most
    once per ``min_interval`` seconds (``force=True`` writes now). ``flush`` writes what is left.
    """

    def __init__(self, sm: sessionmaker[Session], job_id: int, min_interval: float = 1.0) -> None:
        self._sm = sm
        self._job_id = job_id
        self._min_interval = min_interval
        self._last = 0.0
        self._started = time.monotonic()
        self._lines: list[str] = []
        self._epochs: list[dict[str, Any]] = []
        self._fraction = 0.0
        self._message = ""

    def __call__(self, fraction: float, message: str = "", *, force: bool = False) -> None:
        self._record(fraction, message)
        now = time.monotonic()
        if not force and now - self._last < self._min_interval:
            return
        self._last = now
        self._write(check_cancel=True)

    def flush(self) -> None:
        """Write the buffered log and epochs (no cancel check; the job may be finishing)."""
        self._write(check_cancel=False)

    def _record(self, fraction: float, message: str) -> None:
        self._fraction = max(0.0, min(1.0, float(fraction)))
        if not message:
            return
        self._message = message
        elapsed = time.monotonic() - self._started
        self._lines.append(f"[{elapsed:7.1f}s] {message}")
        del self._lines[:-LOG_TAIL_LINES]
        entry = parse_epoch_message(message)
        if entry is not None and len(self._epochs) < MAX_EPOCH_ENTRIES:
            self._epochs.append({**entry, "progress": round(self._fraction, 4),
                                 "t": round(elapsed, 2)})

    def _write(self, *, check_cancel: bool) -> None:
        with self._sm() as session, session.begin():
            job = session.get(Job, self._job_id)
            if job is None:
                raise JobCancelled("job row disappeared")
            if check_cancel and job.cancel_requested:
                raise JobCancelled("cancel requested")
            if check_cancel and job.status != JobStatus.RUNNING:
                raise JobLost(f"job {self._job_id} is {job.status}, no longer running here")
            if job.status != JobStatus.RUNNING:
                return
            job.progress = self._fraction
            job.message = self._message[:500] or job.message
            job.heartbeat_at = now_utc()
            job.log_tail = "\n".join(self._lines) or None
            job.epoch_metrics = list(self._epochs)


def parse_epoch_message(message: str) -> dict[str, Any] | None:
    """``{stage, epoch, n_epochs, loss}`` from a learner's progress line, else None."""
    match = _EPOCH_MESSAGE.match(message)
    if match is None:
        return None
    try:
        loss = float(match["loss"])
    except ValueError:
        return None
    return {"stage": match["stage"].strip(), "epoch": int(match["epoch"]),
            "n_epochs": int(match["n_epochs"]), "loss": loss}


class Heartbeat:
    """A daemon thread that stamps ``heartbeat_at`` every ``interval`` seconds while running.

    The body's own progress writes are throttled and stop during long steps (scoring a big
    pool); this thread keeps the job visibly alive, so the reaper only fails jobs whose process
    is really gone. Use as a context manager around the body.
    """

    def __init__(self, sm: sessionmaker[Session], job_id: int, interval: float) -> None:
        self._sm = sm
        self._job_id = job_id
        self._interval = interval
        self._stop = threading.Event()
        self._thread = threading.Thread(
            target=self._run, name=f"quarry-heartbeat-{job_id}", daemon=True
        )

    def __enter__(self) -> "Heartbeat":
        self._thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=self._interval + 5)

    def _run(self) -> None:
        while not self._stop.wait(self._interval):
            try:
                with self._sm() as session, session.begin():
                    session.execute(
                        update(Job)
                        .where(Job.id == self._job_id, Job.status == JobStatus.RUNNING)
                        .values(heartbeat_at=now_utc())
                    )
            except Exception:  # noqa: BLE001 - a missed beat is retried next interval
                log.warning("heartbeat of job %s failed", self._job_id, exc_info=True)


def fail(sm: sessionmaker[Session], job_id: int, exc: BaseException) -> None:
    """Mark a job failed (or cancelled) in a new session; never leaves it running."""
    cancelled = isinstance(exc, JobCancelled)
    if not cancelled:
        log.error("job %s failed", job_id, exc_info=exc)
    detail = "".join(traceback.format_exception_only(type(exc), exc)).strip()
    with sm() as session, session.begin():
        job = session.get(Job, job_id)
        if job is None or job.status in JobStatus.FINISHED:
            return  # e.g. the reaper failed it already; keep its record
        job.status = JobStatus.CANCELLED if cancelled else JobStatus.FAILED
        job.error = None if cancelled else detail[:2000]
        job.message = "cancelled" if cancelled else "failed"
        job.finished_at = now_utc()
        if not cancelled:
            _emit_failed(session, job_id, job.project_id, job.kind, job.error)


def run_guarded(
    sm: sessionmaker[Session], job_id: int, body: Callable[[Job, Progress], None]
) -> None:
    """Claim the job, run ``body``, and record failure or cancellation if it raises."""
    job = claim(sm, job_id)
    if job is None:
        return
    progress = Progress(sm, job_id)
    try:
        body(job, progress)
    except BaseException as exc:  # noqa: BLE001 - recorded on the job, then re-raised if fatal
        _flush_quietly(progress)
        fail(sm, job_id, exc)
        if not isinstance(exc, Exception):
            raise
    else:
        _flush_quietly(progress)


def _flush_quietly(progress: Progress) -> None:
    try:
        progress.flush()
    except Exception:  # noqa: BLE001 - the log tail is a nicety; the status is what matters
        log.warning("could not write a job's log tail", exc_info=True)


def finish(session: Session, job_id: int, result: dict[str, Any], message: str) -> None:
    """Mark a job succeeded inside the caller's transaction.

    The row is locked and re-read first, so a cancel or a reaper that came in while the job
    trained wins: the caller's transaction is rolled back (nothing it wrote is kept).

    Raises:
        JobCancelled: a cancel was requested.
        JobLost: the job is no longer running (the reaper failed it, or it is gone).
    """
    job = session.get(Job, job_id, with_for_update=True, populate_existing=True)
    if job is None or job.status != JobStatus.RUNNING:
        raise JobLost(f"job {job_id} is no longer running")
    if job.cancel_requested:
        raise JobCancelled("cancel requested")
    job.status = JobStatus.SUCCEEDED
    job.progress = 1.0
    job.result = result
    job.message = message
    job.finished_at = now_utc()
    webhooks.emit(
        session, project_id=job.project_id, event="job.finished", event_id=f"job.finished:{job_id}",
        payload={"job_id": job_id, "kind": job.kind, "status": job.status, "message": message,
                 "result": result},
    )


def reap_stale(sm: sessionmaker[Session], stale_seconds: float) -> list[int]:
    """Fail running jobs whose heartbeat is older than ``stale_seconds``; return their ids.

    Safe to run from every process at once (one conditional UPDATE per job). A job whose
    worker comes back after this (a long GIL or I/O stall) cannot finish: ``finish`` and
    ``Progress`` check the status.
    """
    cutoff = now_utc() - timedelta(seconds=stale_seconds)
    stale = or_(
        Job.heartbeat_at < cutoff,
        and_(Job.heartbeat_at.is_(None), Job.started_at < cutoff),
    )
    reaped: list[int] = []
    with sm() as session, session.begin():
        rows = session.execute(
            select(Job.id, Job.project_id, Job.kind).where(Job.status == JobStatus.RUNNING, stale)
        ).all()
        for job_id, project_id, kind in rows:
            result = session.execute(
                update(Job)
                .where(Job.id == job_id, Job.status == JobStatus.RUNNING, stale)
                .values(
                    status=JobStatus.FAILED,
                    error=f"worker lost: no heartbeat for {stale_seconds:g} s",
                    message="failed: worker lost",
                    finished_at=now_utc(),
                )
            )
            if result.rowcount == 1:  # type: ignore[attr-defined]
                reaped.append(job_id)
                _emit_failed(session, job_id, project_id, kind,
                             f"worker lost: no heartbeat for {stale_seconds:g} s")
    for job_id in reaped:
        log.warning("job %s failed: its worker stopped sending heartbeats", job_id)
    return reaped


def _emit_failed(
    session: Session, job_id: int, project_id: int, kind: str, error: str | None
) -> None:
    """The ``job.failed`` webhook event, in the transaction that failed the job."""
    webhooks.emit(
        session, project_id=project_id, event="job.failed", event_id=f"job.failed:{job_id}",
        payload={"job_id": job_id, "kind": kind, "status": JobStatus.FAILED, "error": error},
    )


def queued_jobs(sm: sessionmaker[Session]) -> list[tuple[int, str]]:
    """``(id, kind)`` of every queued job, oldest first (resubmitted at start-up)."""
    with sm() as session:
        rows = session.execute(
            select(Job.id, Job.kind).where(Job.status == JobStatus.QUEUED).order_by(Job.id)
        ).all()
        return [(int(job_id), str(kind)) for job_id, kind in rows]
