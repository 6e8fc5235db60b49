"""Job runners: one interface (``submit(kind, job_id)``) and the in-process implementations.

``ThreadJobRunner`` runs bodies in a thread of the API process, ``InlineJobRunner`` inside
``submit`` (tests). The child-process runner is in ``app/jobs/process.py`` and the Dramatiq
(Redis) runner in ``app/jobs/broker.py``; all of them run a body through :func:`execute`.
"""

import logging
import threading
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Protocol

from sqlalchemy.orm import Session, sessionmaker

from app.config import Settings
from app.jobs.common import Heartbeat
from app.observability.logs import job_log_context
from app.sampling.index_store import IndexStore
from app.services.embedding import EmbedderCache
from app.storage import ArtifactStore

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class JobContext:
    """Everything a job body needs; jobs open their own short sessions."""

    sessionmaker: sessionmaker[Session]
    settings: Settings
    store: ArtifactStore
    embedders: EmbedderCache
    index_store: IndexStore
    on_checkpoint: Callable[[int], None] = lambda project_id: None


JobFn = Callable[[int, JobContext], None]
JobBodies = Mapping[str, JobFn]


class JobRunner(Protocol):
    """Runs job bodies; ``submit`` is called after the request's commit."""

    def submit(self, kind: str, job_id: int) -> None:
        """Run the body registered for ``kind`` on ``job_id`` some time later (or now)."""
        ...

    def shutdown(self) -> None:
        """Stop taking jobs and wait for the running one."""
        ...


def execute(bodies: JobBodies, kind: str, job_id: int, context: JobContext) -> None:
    """Run the body of ``kind`` on ``job_id`` with a heartbeat thread beside it.

    Raises:
        KeyError: unknown job kind.
    """
    body = bodies[kind]
    with job_log_context(job_id), Heartbeat(
        context.sessionmaker, job_id, context.settings.job_heartbeat_seconds
    ):
        body(job_id, context)


class ThreadJobRunner:
    """In-process runner: one worker thread, jobs run in submission order.

    Training in a thread shares the API's GIL: use it where the API is idle while training
    (``quarry train`` without a server); ``ProcessJobRunner`` is the serving default.
    """

    def __init__(self, context: JobContext, bodies: JobBodies, workers: int = 1) -> None:
        self.context = context
        self.bodies = bodies
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="quarry-job")

    def submit(self, kind: str, job_id: int) -> None:
        future = self._pool.submit(execute, self.bodies, kind, job_id, self.context)
        future.add_done_callback(_log_crash)

    def shutdown(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=False)


class InlineJobRunner:
    """Runs a job synchronously inside ``submit`` (tests, the simulate CLI)."""

    def __init__(self, context: JobContext, bodies: JobBodies) -> None:
        self.context = context
        self.bodies = bodies
        self._lock = threading.Lock()

    def submit(self, kind: str, job_id: int) -> None:
        with self._lock:
            self.bodies[kind](job_id, self.context)

    def shutdown(self) -> None:
        return None


def _log_crash(future: "object") -> None:
    exc = future.exception()  # type: ignore[attr-defined]
    if exc is not None:
        log.error("job body raised", exc_info=exc)
