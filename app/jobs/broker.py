"""Scale-out: the Dramatiq task queue over Redis (``QUARRY_JOB_RUNNER=redis``).

The API process only *sends* ``(kind, job_id)`` messages (after its commit); ``quarry worker``
processes on any machine that reaches the database, Redis and the artifact store consume
them. The jobs table stays the durable record: a message is just "look at job N". Dramatiq's
Redis broker acknowledges a message only after the body returned and re-queues the unacked
messages of a worker whose broker heartbeat stopped; the re-delivered message finds the job
no longer ``queued`` (the reaper failed it) and is dropped, so a job never runs twice.

No Dramatiq middleware is installed: retries, time limits and result storage are the jobs
table's business (status, heartbeat + reaper, ``cancel_requested``), so the broker must not
retry a failed training or kill a long one after Dramatiq's default 10-minute limit.
"""

import logging
import signal
import threading
from collections.abc import Callable
from typing import Any

import dramatiq
import dramatiq.errors
import redis
from dramatiq.brokers.redis import RedisBroker

from app.config import Settings
from app.jobs.runner import JobBodies, JobContext, execute

log = logging.getLogger(__name__)

ACTOR_NAME = "quarry_run_job"


def make_broker(settings: Settings) -> RedisBroker:
    """A Redis broker under ``settings.broker_namespace`` (no middleware; see module doc).

    Its worker heartbeat timeout is ``job_stale_seconds``: the same notion of "dead" as the
    jobs table's reaper.
    """
    return RedisBroker(
        url=settings.broker_url,
        namespace=settings.broker_namespace,
        middleware=[],
        heartbeat_timeout=int(settings.job_stale_seconds * 1000),
    )


def _declare_actor(
    broker: RedisBroker, queue: str, fn: Callable[[str, int], None]
) -> "dramatiq.Actor[Any, Any]":
    return dramatiq.Actor(
        fn, broker=broker, actor_name=ACTOR_NAME, queue_name=queue, priority=0, options={}
    )


class RedisJobRunner:
    """Sends jobs to the Dramatiq queue ``settings.job_queue``; ``quarry worker`` runs them."""

    def __init__(self, settings: Settings) -> None:
        self._broker = make_broker(settings)
        self._actor = _declare_actor(self._broker, settings.job_queue, _not_here)

    def submit(self, kind: str, job_id: int) -> None:
        """Enqueue ``(kind, job_id)``.

        Called after the request's commit: when Redis is unreachable the job stays ``queued``
        in the table (logged, not raised: the client already has its job id) and is sent again
        when an API process starts (``create_app``'s lifespan resubmits queued jobs).
        """
        try:
            self._actor.send(kind, job_id)
        except (redis.exceptions.RedisError, dramatiq.errors.BrokerConnectionError):
            log.error("could not send job %s to the queue; it stays queued", job_id,
                      exc_info=True)

    def shutdown(self) -> None:
        """Close the broker's connections."""
        self._broker.close()


def _not_here(kind: str, job_id: int) -> None:
    raise RuntimeError("the API process only sends jobs; run `quarry worker` to execute them")


class QueueWorker:
    """A Dramatiq worker that runs job bodies in ``threads`` threads of this process."""

    def __init__(
        self, settings: Settings, context: JobContext, bodies: JobBodies, threads: int = 1
    ) -> None:
        self._broker = make_broker(settings)
        self._context = context
        self._bodies = bodies
        _declare_actor(self._broker, settings.job_queue, self._run)
        self._worker = dramatiq.Worker(
            self._broker, queues={settings.job_queue}, worker_threads=threads
        )
        # one message per thread: a busy worker must not hold jobs another worker could run
        self._worker.queue_prefetch = threads

    def _run(self, kind: str, job_id: int) -> None:
        if kind not in self._bodies:
            log.error("job %s has unknown kind %r; dropped", job_id, kind)
            return
        try:
            execute(self._bodies, kind, job_id, self._context)
        except Exception:  # noqa: BLE001 - recorded on the job by run_guarded; ack the message
            log.exception("job %s raised", job_id)

    def start(self) -> None:
        """Start consuming (returns at once; the consumer and worker threads run)."""
        self._worker.start()

    def stop(self) -> None:
        """Stop after the running bodies return; unacked messages go back to the queue."""
        self._worker.stop()
        self._broker.close()


def run_worker_until_stopped(
    worker: QueueWorker, tick: Callable[[], None], period: float
) -> None:
    """Run ``worker``; call ``tick()`` (reaper, schedules) every ``period`` s until SIGTERM/INT."""
    stop = threading.Event()

    def _on_signal(signum: int, _frame: object) -> None:
        log.info("signal %s: stopping after the running job", signum)
        stop.set()

    signal.signal(signal.SIGTERM, _on_signal)
    signal.signal(signal.SIGINT, _on_signal)
    worker.start()
    log.info("worker started")
    try:
        while not stop.is_set():
            try:
                tick()
            except Exception:  # noqa: BLE001 - the loop must survive a DB hiccup
                log.exception("maintenance tick failed")
            stop.wait(period)
    finally:
        worker.stop()
