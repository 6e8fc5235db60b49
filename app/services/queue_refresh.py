"""Queue rankings computed off the request path (stale-while-revalidate for ``/next``).

``/next`` asks :class:`RankingRefresher` for a new ranking when its ranking runs low or its key
changed (a retrain activated a checkpoint, the pool grew), and keeps serving the previous one
meanwhile; so no annotator waits for a pool-wide strategy run (tens to hundreds of ms on a
100k-item pool) and, on SQLite, nobody waits for the single writer lock while one runs.
"""

import logging
import threading
from concurrent.futures import ThreadPoolExecutor

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from app.db import read_only, transaction
from app.models import Project
from app.services import queue
from app.services.clock import now_utc

log = logging.getLogger(__name__)


class RankingRefresher:
    """Computes queue rankings in one background thread, at most one pending per key.

    The pool is read in a read-only transaction (SQLite: a deferred ``BEGIN`` that takes no
    write lock); the ranking is stored in ``deps.rankings`` only if the project still has that
    key, and its ``QueueRanking`` record is written in a short transaction of its own. A
    failure (pool exhausted, a strategy error) is logged and dropped: ``/next`` then computes
    inline once the ranking it serves runs dry, and reports the error itself.

    Args:
        sessionmaker: the service's session factory.
        deps: the queue's collaborators (its ``refresher`` is not used).
    """

    def __init__(self, sessionmaker: sessionmaker[Session], deps: queue.QueueDeps) -> None:
        self._sessionmaker = sessionmaker
        self._deps = deps
        self._pending: set[tuple[object, ...]] = set()
        self._lock = threading.Lock()
        self._settled = threading.Condition(self._lock)
        self._pool: ThreadPoolExecutor | None = None
        self._closed = False

    def request(self, project_id: int, key: tuple[object, ...]) -> bool:
        """Queue a computation of the project's ranking under ``key``; False when one is
        already pending (or the refresher is shut down)."""
        with self._lock:
            if self._closed or key in self._pending:
                return False
            self._pending.add(key)
            if self._pool is None:
                self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="quarry-rank")
            self._pool.submit(self._run, project_id, key)
        return True

    def wait_for(self, key: tuple[object, ...], timeout: float) -> bool:
        """Block until no computation of ``key`` is pending (its ranking stored, or given up);
        False on timeout."""
        with self._settled:
            return self._settled.wait_for(lambda: key not in self._pending, timeout)

    def warm(self, limit: int = 16) -> int:
        """Queue the rankings of the ``limit`` most recently created projects that have an
        active checkpoint (a starting API process: their first ``/next`` then finds a ranking
        and the position -> id map ready); returns how many were queued."""
        with read_only(self._sessionmaker) as session:
            projects = session.scalars(
                select(Project).where(Project.active_checkpoint_id.is_not(None))
                .order_by(Project.id.desc()).limit(limit)
            ).all()
            keys = [(p.id, queue.ranking_key(p)) for p in projects]
        return sum(self.request(project_id, key) for project_id, key in keys)

    def wait_idle(self, timeout: float = 30.0) -> bool:
        """Block until no computation is pending (tests, shutdown); False on timeout."""
        with self._lock:
            pool = self._pool
        if pool is None:
            return True
        done = threading.Event()
        pool.submit(done.set)  # one worker: runs after everything queued before it
        return done.wait(timeout)

    def shutdown(self) -> None:
        """Stop taking requests and wait for the running computation."""
        with self._lock:
            self._closed = True
            pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown(wait=True, cancel_futures=True)

    def _run(self, project_id: int, key: tuple[object, ...]) -> None:
        try:
            self._refresh(project_id, key)
        except Exception:  # noqa: BLE001 - a background refill must never take the server down
            log.warning("background ranking of project %s failed", project_id, exc_info=True)
        finally:
            self._settle(key)

    def _settle(self, key: tuple[object, ...]) -> None:
        with self._settled:
            self._pending.discard(key)
            self._settled.notify_all()

    def _refresh(self, project_id: int, key: tuple[object, ...]) -> None:
        now = now_utc()
        with read_only(self._sessionmaker) as session:
            project = session.get(Project, project_id)
            if project is None or queue.ranking_key(project) != key:
                return  # deleted, or changed again meanwhile: a later request asks anew
            ranking, record = queue.compute_ranking(session, project, self._deps, now)
        self._deps.rankings.put(key, ranking)
        # release waiters before the record's write: on SQLite a waiting /next holds the
        # writer lock that this write needs
        self._settle(key)
        with transaction(self._sessionmaker) as session:
            if session.get(Project, project_id) is not None:
                session.add(record)
