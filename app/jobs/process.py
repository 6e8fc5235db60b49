"""``ProcessJobRunner``: job bodies run in a spawned child process of the API.

Why: a training loop in a thread of the API process holds the GIL between torch kernels (the
per-batch Python of a small head), and request latency suffers; in a child process the API
keeps its interpreter to itself (``bench/retrain_load.py`` measures both). The child builds
its own engine, artifact store and caches from the pickled ``Settings``; the jobs table
carries everything back (status, progress, metrics), as it does for ``quarry worker``.
"""

import logging
import multiprocessing
import threading
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool

from app.config import Settings
from app.jobs.runner import JobContext, execute

log = logging.getLogger(__name__)

_child_context: JobContext | None = None


def _init_child(settings: Settings) -> None:
    global _child_context
    from app.jobs.context import job_context
    from app.ml.runtime import lower_priority, set_threads

    set_threads(settings.torch_threads)
    lower_priority(settings.job_nice)
    _child_context = job_context(settings)


def _run_in_child(kind: str, job_id: int) -> None:
    from app.jobs.bodies import JOB_BODIES

    if _child_context is None:
        raise RuntimeError("job child process was not initialised")
    execute(JOB_BODIES, kind, job_id, _child_context)


class ProcessJobRunner:
    """One long-lived child process (spawned), jobs run in submission order.

    A child that dies (killed, out of memory) breaks the pool; the next ``submit`` starts a new
    child, and the reaper fails the job the dead child held (its heartbeat stops).
    """

    def __init__(self, settings: Settings, workers: int = 1) -> None:
        self._settings = settings
        self._workers = workers
        self._lock = threading.Lock()
        self._pool = self._new_pool()

    def _new_pool(self) -> ProcessPoolExecutor:
        return ProcessPoolExecutor(
            max_workers=self._workers,
            mp_context=multiprocessing.get_context("spawn"),
            initializer=_init_child,
            initargs=(self._settings,),
        )

    def submit(self, kind: str, job_id: int) -> None:
        """Queue ``kind`` on ``job_id`` for the child process."""
        with self._lock:
            try:
                future = self._pool.submit(_run_in_child, kind, job_id)
            except BrokenProcessPool:
                log.warning("job child process died; starting a new one")
                self._pool.shutdown(wait=False, cancel_futures=True)
                self._pool = self._new_pool()
                future = self._pool.submit(_run_in_child, kind, job_id)
        future.add_done_callback(_log_crash)

    def alive(self) -> bool:
        """False when the job child died (killed, out of memory) and no job has replaced it
        yet; True when it runs or has not been started (it starts on the first job)."""
        with self._lock:
            pool = self._pool
            if getattr(pool, "_broken", False):
                return False
            processes = dict(getattr(pool, "_processes", None) or {})
        return all(p.is_alive() for p in processes.values())

    def shutdown(self) -> None:
        """Wait for the running job, drop queued ones (they stay queued in the table)."""
        with self._lock:
            self._pool.shutdown(wait=True, cancel_futures=True)


def _log_crash(future: "Future[None]") -> None:
    exc = future.exception()
    if exc is not None:
        log.error("job child raised", exc_info=exc)
