"""Engine and session factories; nothing here runs at import time."""

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.orm import Session, sessionmaker

from app.config import Settings
from app.observability.db_timing import instrument


def make_engine(settings: Settings) -> Engine:
    """Create the engine for ``settings.database_url`` (SQLite gets WAL and real SAVEPOINTs)."""
    url = settings.database_url
    if url.startswith("sqlite"):
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 30})
        enable_sqlite_transactions(engine)
    else:
        engine = _postgresql_engine(url)
    instrument(engine)  # per-request database time in the access log
    return engine


def _postgresql_engine(url: str) -> Engine:
    # up to 50 connections: more than uvicorn's 40 worker threads (anyio's default limiter),
    # so a request that needs a connection outside the thread pool (an async dependency) never
    # waits for one held by a thread whose response it blocks (a 30 s pool-timeout stall)
    return create_engine(url, pool_pre_ping=True, pool_size=20, max_overflow=30)


def enable_sqlite_transactions(engine: Engine) -> None:
    """SQLAlchemy's documented pysqlite fix: emit BEGIN ourselves so SAVEPOINT works.

    Transactions are ``BEGIN IMMEDIATE`` (one writer at a time). Threads of this process queue
    for that on a lock instead of on SQLite's busy handler, whose sleep-and-retry backoff (up
    to 100 ms per retry) lets an unlucky request lose for seconds under many concurrent
    writers; other processes still meet SQLite's busy timeout. WAL with ``synchronous=NORMAL``
    (SQLite's recommended WAL setting) skips the fsync on every commit: a power loss may drop
    the last commits, never corrupt or half-apply one.
    """
    writer = threading.Lock()

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute("PRAGMA busy_timeout=30000")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Any) -> None:
        if conn.get_execution_options().get(READ_ONLY):
            conn.exec_driver_sql("BEGIN")  # a WAL reader: never waits for the writer
            return
        # IMMEDIATE takes the write lock up front, so concurrent writers wait (busy_timeout)
        # instead of failing with "database is locked" when a read transaction upgrades.
        if writer.acquire(timeout=30):  # else fall back to SQLite's own busy wait
            conn.info["quarry_writer_lock"] = True
        try:
            conn.exec_driver_sql("BEGIN IMMEDIATE")
        except BaseException:
            _release(conn)
            raise

    def _release(conn: Any, *_args: Any) -> None:
        if conn.info.pop("quarry_writer_lock", False):
            writer.release()

    event.listen(engine, "commit", _release)
    event.listen(engine, "rollback", _release)

    @event.listens_for(engine, "checkin")
    def _on_checkin(_dbapi_connection: Any, record: Any) -> None:
        if record.info.pop("quarry_writer_lock", False):  # closed without commit or rollback
            writer.release()


READ_ONLY = "quarry_read_only"
"""Connection execution option of :func:`read_only` sessions."""


@contextmanager
def read_only(factory: sessionmaker[Session]) -> Iterator[Session]:
    """A unit of work that only reads: always rolled back. On SQLite its transaction is a
    deferred ``BEGIN`` (a WAL snapshot reader) that neither takes nor waits for the single
    writer lock every other transaction holds; elsewhere it is an ordinary transaction.
    """
    session = factory()
    try:
        session.connection(execution_options={READ_ONLY: True})
        yield session
    finally:
        session.rollback()
        session.close()


def make_sessionmaker(engine: Engine) -> sessionmaker[Session]:
    """Session factory; sessions do not expire objects on commit."""
    return sessionmaker(bind=engine, expire_on_commit=False)


@contextmanager
def transaction(factory: sessionmaker[Session]) -> Iterator[Session]:
    """One unit of work: commit on success, roll back on error, then run after-commit hooks.

    Services register hooks in ``session.info["after_commit"]`` (e.g. submitting a job); they
    run only once the commit succeeded.
    """
    session = factory()
    try:
        yield session
        session.commit()
    except BaseException:
        session.rollback()
        session.info.pop("after_commit", None)
        raise
    finally:
        callbacks = session.info.pop("after_commit", [])
        session.close()
    for callback in callbacks:
        callback()
