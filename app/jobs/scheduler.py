"""The maintenance loop every job-running process runs: reap dead jobs, fire due schedules.

It runs in the API process (``QUARRY_SCHEDULER_ENABLED``, any runner but ``inline``) and in
every ``quarry worker``; all of them may run at once: the reaper and the schedule triggers
are conditional updates, so each dead job is failed once and each trigger starts one job.
"""

import logging
import threading
from dataclasses import dataclass, field

from sqlalchemy.orm import Session, sessionmaker

from app.config import Settings
from app.db import transaction
from app.jobs.common import reap_stale
from app.jobs.runner import JobRunner
from app.models import TrainingSchedule
from app.services import scheduling
from app.services.queue import now_utc

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TickReport:
    """What one tick did: failed job ids and started job ids."""

    reaped: list[int] = field(default_factory=list)
    started: list[int] = field(default_factory=list)


def tick(sm: sessionmaker[Session], settings: Settings, runner: JobRunner) -> TickReport:
    """One pass: fail stale running jobs, then start the runs that schedules owe.

    Each schedule is handled in its own transaction; the job is submitted after the commit.
    """
    reaped = reap_stale(sm, settings.job_stale_seconds)
    started: list[int] = []
    with sm() as session:
        project_ids = scheduling.enabled_project_ids(session)
    for project_id in project_ids:
        try:
            with transaction(sm) as session:
                row = session.get(TrainingSchedule, project_id)
                if row is None:
                    continue
                now = now_utc()
                reason = scheduling.due_reason(session, row, now)
                if reason is None:
                    continue
                job = scheduling.trigger(session, row, reason, now, runner=runner)
                if job is not None:
                    started.append(job.id)
        except Exception:  # noqa: BLE001 - one broken schedule must not stop the others
            log.exception("schedule of project %s failed", project_id)
    return TickReport(reaped=reaped, started=started)


class MaintenanceLoop:
    """A daemon thread calling :func:`tick` every ``settings.scheduler_poll_seconds``."""

    def __init__(self, sm: sessionmaker[Session], settings: Settings, runner: JobRunner) -> None:
        self._sm, self._settings, self._runner = sm, settings, runner
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="quarry-maintenance", daemon=True)

    def start(self) -> None:
        """Start the thread."""
        self._thread.start()

    def stop(self) -> None:
        """Stop after the current tick."""
        self._stop.set()
        self._thread.join(timeout=30)

    def _run(self) -> None:
        while not self._stop.wait(self._settings.scheduler_poll_seconds):
            try:
                tick(self._sm, self._settings, self._runner)
            except Exception:  # noqa: BLE001 - the loop must survive a DB hiccup
                log.exception("maintenance tick failed")
