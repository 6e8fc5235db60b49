"""Fixtures for jobs that run in other processes: a committed database (their sessions cannot
see a rolled-back test transaction), a per-test Redis namespace and queue, and `quarry worker`
subprocesses."""

import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from sqlalchemy import create_engine, make_url, text

from app.config import Settings
from app.migrate import upgrade_to_head

REPO = Path(__file__).resolve().parents[2]


def _committed_url(tmp_path: Path) -> str:
    base = os.environ.get("QUARRY_TEST_DATABASE_URL")
    if not base or not base.startswith("postgresql"):
        return f"sqlite+pysqlite:///{tmp_path / 'jobs.db'}"
    url = make_url(base)
    url = url.set(database=f"{url.database}_jobs")
    admin = create_engine(url.set(database="postgres"), isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        if not conn.scalar(text("SELECT 1 FROM pg_database WHERE datname = :n"),
                           {"n": url.database}):
            conn.execute(text(f'CREATE DATABASE "{url.database}"'))
    admin.dispose()
    engine = create_engine(url)
    with engine.begin() as conn:
        conn.execute(text("DROP SCHEMA public CASCADE"))
        conn.execute(text("CREATE SCHEMA public"))
    engine.dispose()
    return url.render_as_string(hide_password=False)


@pytest.fixture
def broker_settings(tmp_path: Path, redis_url: str) -> Iterator[Settings]:
    """Settings on a committed, migrated database and a Redis namespace/queue of this test."""
    import redis

    tag = uuid.uuid4().hex[:10]
    url = _committed_url(tmp_path)
    upgrade_to_head(url)
    settings = Settings(
        data_dir=tmp_path / "data", database_url=url, job_runner="redis", broker_url=redis_url,
        broker_namespace=f"quarry-test-{tag}", job_queue=f"jobs-{tag}",
        job_heartbeat_seconds=0.5, job_stale_seconds=4.0, scheduler_poll_seconds=0.5,
        import_inline_max=10_000, mc_dropout_samples=0,
    )
    yield settings
    client = redis.Redis.from_url(redis_url)
    keys = list(client.scan_iter(f"{settings.broker_namespace}:*"))
    if keys:
        client.delete(*keys)


def settings_env(settings: Settings) -> dict[str, str]:
    """The environment that makes a subprocess build the same Settings."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("QUARRY_")}
    for name, value in settings.model_dump().items():
        if value is None:
            continue
        text_value = str(value).lower() if isinstance(value, bool) else str(value)
        env[f"QUARRY_{name.upper()}"] = text_value
    env["QUARRY_TORCH_THREADS"] = "1"
    env["PYTHONPATH"] = str(REPO)
    return env


@pytest.fixture
def start_worker(
    broker_settings: Settings, tmp_path: Path
) -> Iterator[Callable[[], subprocess.Popen]]:
    """Start `quarry worker` subprocesses; all are killed at the end of the test."""
    procs: list[subprocess.Popen] = []

    def start() -> subprocess.Popen:
        log = open(tmp_path / f"worker{len(procs)}.log", "w")  # noqa: SIM115 - closed with the test
        proc = subprocess.Popen(
            [sys.executable, "-m", "app.cli", "worker"], cwd=REPO,
            env=settings_env(broker_settings), stdout=log, stderr=subprocess.STDOUT,
        )
        procs.append(proc)
        return proc

    yield start
    for proc in procs:
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)


def wait_for(predicate: Callable[[], object], timeout: float, what: str) -> object:
    """Poll ``predicate`` every 0.2 s until it returns something truthy."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")
