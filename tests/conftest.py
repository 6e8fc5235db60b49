"""Shared fixtures: a migrated database (SQLite by default, PostgreSQL with
QUARRY_TEST_DATABASE_URL), one rolled-back transaction per test, and an API client whose jobs
run inline."""

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine, create_engine, make_url, text
from sqlalchemy.orm import Session, sessionmaker

from app.config import Settings
from app.db import enable_sqlite_transactions
from app.main import build_services, create_app
from app.migrate import downgrade, upgrade_to_head
from app.observability.db_timing import instrument

# every test app would freeze its predecessors' garbage for good (app.main's gc.freeze)
os.environ.setdefault("QUARRY_GC_FREEZE", "false")

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


def _test_url(tmp_dir: Path) -> str:
    return os.environ.get("QUARRY_TEST_DATABASE_URL") or f"sqlite+pysqlite:///{tmp_dir / 'test.db'}"


@pytest.fixture(scope="session")
def database_url(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A database migrated to head (from empty, via Alembic)."""
    url = _test_url(tmp_path_factory.mktemp("db"))
    if url.startswith("postgresql"):
        _create_database(url)
        engine = create_engine(url)
        with engine.begin() as conn:
            conn.execute(text("DROP SCHEMA public CASCADE"))
            conn.execute(text("CREATE SCHEMA public"))
        engine.dispose()
    upgrade_to_head(url)
    return url


def _create_database(url: str) -> None:
    target = make_url(url)
    admin = create_engine(target.set(database="postgres"), isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        exists = conn.scalar(
            text("SELECT 1 FROM pg_database WHERE datname = :name"), {"name": target.database}
        )
        if not exists:
            conn.execute(text(f'CREATE DATABASE "{target.database}"'))
    admin.dispose()


@pytest.fixture(scope="session")
def engine(database_url: str) -> Iterator[Engine]:
    if database_url.startswith("sqlite"):
        eng = create_engine(database_url, connect_args={"check_same_thread": False})
        enable_sqlite_transactions(eng)
    else:
        eng = create_engine(database_url)
    instrument(eng)  # as app.db.make_engine does: database time in the access log
    yield eng
    eng.dispose()


@pytest.fixture
def sessionmaker_(engine: Engine) -> Iterator[sessionmaker[Session]]:
    """Sessions joined to one outer transaction that is rolled back after the test."""
    with engine.connect() as conn:
        txn = conn.begin()
        yield sessionmaker(
            bind=conn, join_transaction_mode="create_savepoint", expire_on_commit=False
        )
        txn.rollback()


@pytest.fixture
def session(sessionmaker_: sessionmaker[Session]) -> Iterator[Session]:
    with sessionmaker_() as s:
        yield s


@pytest.fixture
def settings(tmp_path: Path, database_url: str) -> Settings:
    return Settings(
        data_dir=tmp_path / "data", database_url=database_url, job_runner="inline",
        import_inline_max=64,
        queue_background_refresh=False,  # one shared connection: no second thread on it
    )


@pytest.fixture
def services(settings: Settings, sessionmaker_: sessionmaker[Session]):  # type: ignore[no-untyped-def]
    return build_services(settings, sessionmaker=sessionmaker_)


@pytest.fixture
def app(settings: Settings, services):  # type: ignore[no-untyped-def]
    return create_app(settings, services)


def make_key(
    sessionmaker_: sessionmaker[Session], role: str, *, name: str | None = None,
    projects: tuple[int, ...] = (), password: str | None = None,
) -> str:
    """A user with ``role`` (member of ``projects``) and a fresh API key for it."""
    from app.db import transaction
    from app.models import Project
    from app.services import auth

    with transaction(sessionmaker_) as s:
        user = auth.create_user(
            s, name=name or f"{role}-{os.urandom(4).hex()}", role=role, password=password
        )
        for pid in projects:
            auth.add_member(s, s.get(Project, pid), user)  # type: ignore[arg-type]
        _row, key = auth.create_key(s, user, name="test")
    return key


@pytest.fixture
def admin_key(sessionmaker_: sessionmaker[Session]) -> str:
    return make_key(sessionmaker_, "admin", name="test-admin")


@pytest.fixture
def client(app, admin_key: str) -> Iterator[TestClient]:  # type: ignore[no-untyped-def]
    """An API client that carries an admin key."""
    with TestClient(
        app, raise_server_exceptions=False, headers={"Authorization": f"Bearer {admin_key}"}
    ) as c:
        yield c


@pytest.fixture
def anon_client(client: TestClient) -> TestClient:
    """A client of the same app without credentials."""
    return TestClient(client.app, raise_server_exceptions=False)


@pytest.fixture
def client_as(client: TestClient, sessionmaker_: sessionmaker[Session]):  # type: ignore[no-untyped-def]
    """``client_as(role, projects=(pid, ...), name=None)``: a client with a new user's key."""

    def make(role: str, projects: tuple[int, ...] = (), name: str | None = None) -> TestClient:
        key = make_key(sessionmaker_, role, name=name, projects=projects)
        return TestClient(
            client.app, raise_server_exceptions=False, headers={"Authorization": f"Bearer {key}"}
        )

    return make


@pytest.fixture
def redis_url() -> str:
    """The local Redis server; skips when it is not running (.ci/run starts it)."""
    import redis

    url = os.environ.get("QUARRY_TEST_BROKER_URL", "redis://127.0.0.1:6379/0")
    try:
        redis.Redis.from_url(url, socket_connect_timeout=2).ping()
    except redis.exceptions.ConnectionError:
        pytest.skip(f"no Redis at {url}")
    return url


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """../shared/data with the real datasets; skips when absent."""
    if not SHARED_DATA.exists():
        pytest.skip("../shared/data is not present")
    return SHARED_DATA


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """Leave a PostgreSQL test database downgraded to base (exercises downgrade)."""
    url = os.environ.get("QUARRY_TEST_DATABASE_URL")
    if url and exitstatus == 0:
        downgrade(url, "base")


@pytest.fixture(scope="session", autouse=True)
def _one_torch_thread() -> None:
    """Tiny nets on a shared machine: one intra-op thread avoids oversubscription."""
    from app.ml.runtime import set_threads

    set_threads(1)
