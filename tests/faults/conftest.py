"""Fault-test fixtures: real servers in real processes, always torn down.

- ``pg_url``: a fresh database of this test on the machine's PostgreSQL (127.0.0.1:5432, or the
  server of ``QUARRY_TEST_DATABASE_URL``), dropped afterwards; skips when it is unreachable.
- ``private_pg``: a private PostgreSQL cluster (``initdb`` + ``pg_ctl`` on a free port, run as
  the ``postgres`` user when we are root) that a test may restart; never the machine's server.
- ``redis_url``: the machine's Redis (skips without it), with a per-test key namespace.
- ``spawn``: starts ``uvicorn`` / ``quarry worker`` subprocesses in their own process group
  (so a SIGKILL of the group takes the job child processes with it), logs under ``tmp_path``;
  every group still alive is SIGKILLed at teardown.

Every HTTP call carries ``Authorization: Bearer <ADMIN_KEY>`` and the servers get
``QUARRY_BOOTSTRAP_ADMIN_KEY`` (ignored until auth is enabled).
"""

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest
from sqlalchemy import create_engine, make_url, text

from app.migrate import upgrade_to_head

REPO = Path(__file__).resolve().parents[2]
ADMIN_KEY = "faults-admin-key-" + "k" * 24
PG_BIN = Path("/usr/lib/postgresql/15/bin")
DEFAULT_PG = "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """``make test`` runs the suite twice; these tests always use PostgreSQL, so they run once,
    in the PostgreSQL pass (or wherever ``QUARRY_FAULT_TESTS=1``)."""
    on_pg = os.environ.get("QUARRY_TEST_DATABASE_URL", "").startswith("postgresql")
    if on_pg or os.environ.get("QUARRY_FAULT_TESTS") == "1":
        return
    skip = pytest.mark.skip(
        reason="fault tests run in the PostgreSQL pass (QUARRY_FAULT_TESTS=1 forces)"
    )
    here = Path(__file__).parent
    for item in items:
        if here in Path(str(item.path)).parents:
            item.add_marker(skip)


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for(predicate: Callable[[], object], timeout: float, what: str) -> object:
    """Poll ``predicate`` every 0.2 s until it returns something truthy.

    Raises:
        AssertionError: after ``timeout`` seconds.
    """
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


def http_client(port: int, timeout: float = 30.0) -> httpx.Client:
    """An HTTP client for the API on ``port`` carrying the admin key."""
    return httpx.Client(
        base_url=f"http://127.0.0.1:{port}", timeout=timeout,
        headers={"Authorization": f"Bearer {ADMIN_KEY}"},
    )


# --------------------------------------------------------------------------------------------
# databases


def _admin_url(base: str) -> str:
    return make_url(base).set(database="postgres").render_as_string(hide_password=False)


def create_database(base: str, name: str) -> str:
    """Create database ``name`` on the server of ``base`` (dropping a leftover); its URL."""
    admin = create_engine(_admin_url(base), isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    admin.dispose()
    return make_url(base).set(database=name).render_as_string(hide_password=False)


def drop_database(base: str, name: str) -> None:
    """Drop database ``name`` (terminating its connections)."""
    admin = create_engine(_admin_url(base), isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


def _server_base() -> str:
    env = os.environ.get("QUARRY_TEST_DATABASE_URL", "")
    return env if env.startswith("postgresql") else DEFAULT_PG


@pytest.fixture
def pg_url() -> Iterator[str]:
    """A fresh, migrated database on the machine's PostgreSQL; dropped after the test."""
    base = _server_base()
    try:
        engine = create_engine(_admin_url(base), connect_args={"connect_timeout": 3})
        with engine.connect():
            pass
        engine.dispose()
    except Exception as exc:  # noqa: BLE001 - any connection failure means "no server"
        pytest.skip(f"no PostgreSQL at {make_url(base).render_as_string()}: {exc}")
    name = f"quarry_faults_{uuid.uuid4().hex[:10]}"
    url = create_database(base, name)
    upgrade_to_head(url)
    yield url
    drop_database(base, name)


@dataclass
class PrivateCluster:
    """A PostgreSQL cluster of one test: ``url`` is its ``quarry`` database."""

    data_dir: Path
    port: int
    log: Path
    as_user: list[str]
    url: str = ""

    def ctl(self, *args: str, timeout: float = 60) -> None:
        """Run ``pg_ctl`` on the cluster (as the cluster's owner).

        Raises:
            subprocess.CalledProcessError: pg_ctl failed.
        """
        subprocess.run(
            [*self.as_user, str(PG_BIN / "pg_ctl"), "-D", str(self.data_dir), "-w",
             "-t", str(int(timeout)), *args],
            check=True, timeout=timeout + 10, capture_output=True,
        )

    def start(self) -> None:
        """Start the postmaster on ``port`` (socket in the data dir), wait until it accepts."""
        self.ctl("-o", f"-p {self.port} -k {self.data_dir} -c listen_addresses=127.0.0.1",
                 "-l", str(self.log), "start")

    def restart(self, mode: str) -> None:
        """``pg_ctl restart -m MODE`` (fast: roll back and disconnect; immediate: crash-like)."""
        self.ctl("-m", mode, "-o",
                 f"-p {self.port} -k {self.data_dir} -c listen_addresses=127.0.0.1",
                 "-l", str(self.log), "restart")


@pytest.fixture
def private_pg() -> Iterator[PrivateCluster]:
    """A private PostgreSQL 15 cluster on a free port with a migrated ``quarry`` database.

    Skips when the PostgreSQL server binaries are not installed.
    """
    if not (PG_BIN / "initdb").exists():
        pytest.skip(f"PostgreSQL server binaries not found in {PG_BIN}")
    root = Path(tempfile.mkdtemp(prefix="quarry-faults-pg-"))
    as_user: list[str] = []
    if os.geteuid() == 0:  # initdb refuses root: run the cluster as postgres
        runuser = shutil.which("runuser")
        if runuser is None:
            pytest.skip("running as root without runuser: cannot start a private cluster")
        as_user = [runuser, "-u", "postgres", "--"]
        shutil.chown(root, "postgres", "postgres")
        root.chmod(0o755)
    cluster = PrivateCluster(data_dir=root / "data", port=free_port(), log=root / "pg.log",
                             as_user=as_user)
    try:
        subprocess.run(
            [*as_user, str(PG_BIN / "initdb"), "-D", str(cluster.data_dir), "-U", "postgres",
             "--auth=trust", "--no-sync"],
            check=True, timeout=120, capture_output=True,
        )
        cluster.start()
        base = f"postgresql+psycopg://postgres@127.0.0.1:{cluster.port}/postgres"
        cluster.url = create_database(base, "quarry")
        upgrade_to_head(cluster.url)
        yield cluster
    finally:
        with contextlib.suppress(subprocess.CalledProcessError, subprocess.TimeoutExpired):
            cluster.ctl("-m", "immediate", "stop", timeout=30)
        shutil.rmtree(root, ignore_errors=True)


# --------------------------------------------------------------------------------------------
# Redis


@pytest.fixture
def redis_namespace(redis_url: str) -> Iterator[str]:
    """A Redis key namespace of this test; its keys are deleted afterwards."""
    import redis

    namespace = f"quarry-faults-{uuid.uuid4().hex[:10]}"
    yield namespace
    client = redis.Redis.from_url(redis_url)
    keys = list(client.scan_iter(f"{namespace}:*"))
    if keys:
        client.delete(*keys)


# --------------------------------------------------------------------------------------------
# processes


def service_env(**settings: object) -> dict[str, str]:
    """This environment without QUARRY_* variables, plus ``QUARRY_<NAME>`` for each setting."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("QUARRY_")}
    env.update({
        "PYTHONPATH": str(REPO), "QUARRY_TORCH_THREADS": "1", "TOKENIZERS_PARALLELISM": "false",
        "QUARRY_BOOTSTRAP_ADMIN_KEY": ADMIN_KEY,
    })
    for name, value in settings.items():
        env[f"QUARRY_{name.upper()}"] = (
            str(value).lower() if isinstance(value, bool) else str(value)
        )
    return env


@dataclass
class Proc:
    """A subprocess leading its own process group."""

    popen: subprocess.Popen[bytes]
    log: Path
    port: int | None = None

    @property
    def pid(self) -> int:
        return self.popen.pid

    def kill_group(self, sig: int = signal.SIGKILL) -> None:
        """Send ``sig`` to the whole group (the server and its job child processes)."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.popen.pid, sig)

    def wait(self, timeout: float) -> int:
        return self.popen.wait(timeout=timeout)

    def tail(self, n: int = 4000) -> str:
        return self.log.read_text(errors="replace")[-n:] if self.log.exists() else ""


@dataclass
class Spawner:
    """Starts API servers and workers; ``close`` SIGKILLs every group still alive."""

    tmp_path: Path
    procs: list[Proc] = field(default_factory=list)

    def _start(self, args: list[str], env: dict[str, str], name: str) -> Proc:
        log = self.tmp_path / f"{name}{len(self.procs)}.log"
        with log.open("wb") as handle:
            popen = subprocess.Popen(
                args, cwd=REPO, env=env, stdout=handle, stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        proc = Proc(popen, log)
        self.procs.append(proc)
        return proc

    def api(self, env: dict[str, str], port: int | None = None, timeout: float = 120) -> Proc:
        """Start uvicorn with the app on ``port`` (a free one by default); wait for /healthz."""
        port = port or free_port()
        proc = self._start(
            [sys.executable, "-m", "uvicorn", "app.main:create_app", "--factory",
             "--host", "127.0.0.1", "--port", str(port), "--log-level", "warning"],
            env, "api",
        )
        proc.port = port
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if proc.popen.poll() is not None:
                raise RuntimeError(f"uvicorn exited with {proc.popen.returncode}:\n{proc.tail()}")
            try:
                health = httpx.get(f"http://127.0.0.1:{port}/api/v1/healthz", timeout=2)
                if health.status_code == 200:
                    return proc
            except httpx.HTTPError:
                pass
            time.sleep(0.3)
        raise RuntimeError(f"uvicorn did not answer /healthz within {timeout} s:\n{proc.tail()}")

    def worker(self, env: dict[str, str]) -> Proc:
        """Start ``quarry worker`` (Dramatiq on Redis)."""
        return self._start([sys.executable, "-m", "app.cli", "worker"], env, "worker")

    def close(self) -> None:
        for proc in self.procs:
            if proc.popen.poll() is None:
                proc.kill_group(signal.SIGKILL)
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.popen.wait(timeout=30)
            proc.kill_group(signal.SIGKILL)  # children left behind by a group leader's exit


@pytest.fixture
def spawn(tmp_path: Path) -> Iterator[Spawner]:
    """Process starter; every process group it started is killed at teardown."""
    spawner = Spawner(tmp_path)
    yield spawner
    spawner.close()
