"""Operations: /healthz, /readyz (database, artifacts, broker, worker), /metrics, JSON logs,
``quarry db upgrade``, and compose.yaml / Dockerfile referring to real commands and settings."""

import io
import json
import logging
import os
import re
import subprocess
import sys
import uuid
from datetime import timedelta
from pathlib import Path

import pytest
import redis
import yaml
from fastapi.testclient import TestClient
from sqlalchemy import create_engine, inspect, make_url, text

from app.cli import build_parser
from app.config import Settings
from app.main import build_services, create_app
from app.models import Job, JobStatus
from app.observability.heartbeat import beat, heartbeat_key
from app.observability.logs import ContextFilter, JsonFormatter, job_log_context
from app.services.queue import now_utc
from tests.factories import API, label_items, make_pool, make_project

ROOT = Path(__file__).resolve().parents[2]
REDIS_URL = "redis://127.0.0.1:6379/0"


def _redis_up() -> bool:
    try:
        return bool(redis.Redis.from_url(REDIS_URL, socket_timeout=1).ping())
    except redis.RedisError:
        return False


@pytest.fixture
def auth_client(client, services):  # type: ignore[no-untyped-def]
    """conftest's client; with an admin key of its own until conftest's carries one."""
    if "Authorization" not in client.headers:
        from app.main import ensure_bootstrap_key

        secret = "ops-operations-tests-admin-key-0123456789"
        ensure_bootstrap_key(services, secret)
        client.headers["Authorization"] = f"Bearer {secret}"
    return client


def _app_client(settings: Settings, sessionmaker_) -> TestClient:  # type: ignore[no-untyped-def]
    """A client without the lifespan (no job resubmission, no loops)."""
    return TestClient(create_app(settings, build_services(settings, sessionmaker=sessionmaker_)),
                      raise_server_exceptions=False)


def test_healthz_and_readyz_inline(client):
    assert client.get(f"{API}/healthz").json() == {"status": "ok"}
    ready = client.get(f"{API}/readyz")
    assert ready.status_code == 200
    assert ready.json()["checks"] == {"database": "ok", "artifacts": "ok"}


def test_readyz_process_runner_reports_the_job_child(settings, sessionmaker_):
    settings.job_runner = "process"
    client = _app_client(settings, sessionmaker_)
    body = client.get(f"{API}/readyz").json()
    assert body["checks"]["worker"] == "ok" and body["status"] == "ok"


@pytest.mark.skipif(not _redis_up(), reason="Redis is not running on 127.0.0.1:6379")
def test_readyz_redis_broker_and_worker_heartbeat(settings, sessionmaker_):
    settings.job_runner = "redis"
    settings.broker_url = REDIS_URL
    settings.broker_namespace = f"quarry-ops-test-{uuid.uuid4().hex[:8]}"
    settings.job_stale_seconds = 30
    client = _app_client(settings, sessionmaker_)
    r = redis.Redis.from_url(REDIS_URL)
    try:
        missing = client.get(f"{API}/readyz")
        assert missing.status_code == 503
        assert missing.json()["checks"]["broker"] == "ok"
        assert missing.json()["checks"]["worker"].startswith("error")
        beat(r, settings, "host-a:123")
        assert 0 < r.ttl(heartbeat_key(settings, "host-a:123")) <= 30
        ready = client.get(f"{API}/readyz")
        assert ready.status_code == 200, ready.json()
        assert ready.json()["checks"] == {"database": "ok", "artifacts": "ok", "broker": "ok",
                                          "worker": "ok"}
        r.delete(heartbeat_key(settings, "host-a:123"))  # the worker's key expired
        assert client.get(f"{API}/readyz").status_code == 503
    finally:
        for key in r.scan_iter(match=f"{settings.broker_namespace}:*"):
            r.delete(key)
    settings.broker_url = "redis://127.0.0.1:1/0"  # nothing listens there
    down = _app_client(settings, sessionmaker_).get(f"{API}/readyz")
    assert down.status_code == 503 and down.json()["checks"]["broker"].startswith("error")


def test_metrics_latency_by_route_template_queue_depth_jobs_and_labels(
    auth_client, session
):  # type: ignore[no-untyped-def]
    client = auth_client
    project = make_project(client, name="metrics")
    pid = project["id"]
    _, classes = make_pool(client, project, n=20)
    label_items(client, project, classes, 3)
    start = now_utc() - timedelta(minutes=5)
    session.add_all([
        Job(project_id=pid, kind="train", status=JobStatus.SUCCEEDED, params={}, result={},
            created_at=start, started_at=start, finished_at=start + timedelta(seconds=90)),
        Job(project_id=pid, kind="import", status=JobStatus.QUEUED, params={}, result={},
            created_at=start),
    ])
    session.commit()
    assert client.get(f"{API}/projects/{pid}").status_code == 200
    response = client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    text_ = response.text
    assert re.search(r'quarry_http_request_duration_seconds_count\{method="GET",'
                     r'route="/api/v1/projects/\{project_id\}",status="200"\} 1\.0', text_)
    assert f'route="/api/v1/projects/{pid}"' not in text_  # templates, not raw paths
    assert 'route="/api/v1/projects/{project_id}/annotations",status="201"} 3.0' in text_
    assert 'quarry_jobs{kind="import",status="queued"} 1.0' in text_
    assert 'quarry_job_duration_seconds_bucket{kind="train",le="60.0",status="succeeded"} 0.0' \
        in text_
    assert 'quarry_job_duration_seconds_bucket{kind="train",le="120.0",status="succeeded"} 1.0' \
        in text_
    assert 'quarry_job_duration_seconds_sum{kind="train",status="succeeded"} 90.0' in text_
    assert f'quarry_labels_last_hour{{project_id="{pid}"}} 3.0' in text_


def test_request_id_and_json_access_log(client):
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.addFilter(ContextFilter())
    handler.setFormatter(JsonFormatter())
    access = logging.getLogger("quarry.access")
    access.addHandler(handler)
    old_level = access.level
    access.setLevel(logging.INFO)
    try:
        sent = client.get(f"{API}/healthz", headers={"X-Request-ID": "req-42"})
        fresh = client.get(f"{API}/healthz")
        listed = client.get(f"{API}/projects")
    finally:
        access.removeHandler(handler)
        access.setLevel(old_level)
    assert sent.headers["x-request-id"] == "req-42"
    assert re.fullmatch(r"[0-9a-f]{32}", fresh.headers["x-request-id"])
    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    first = lines[0]
    assert first["request_id"] == "req-42" and first["route"] == "/api/v1/healthz"
    assert first["status"] == 200 and first["method"] == "GET" and first["duration_ms"] >= 0
    assert first["level"] == "INFO" and first["logger"] == "quarry.access"
    assert lines[1]["request_id"] == fresh.headers["x-request-id"]
    # the time spent in database calls: none for the health check, some for a listing
    assert first["db_statements"] == 0 and first["db_ms"] == 0
    assert listed.status_code == 200 and lines[2]["route"] == "/api/v1/projects"
    assert lines[2]["db_statements"] >= 1 and 0 < lines[2]["db_ms"] <= lines[2]["duration_ms"]


def test_json_log_lines_carry_the_job_id():
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.addFilter(ContextFilter())
    handler.setFormatter(JsonFormatter())
    log = logging.getLogger("quarry.test.jobs")
    log.addHandler(handler)
    log.setLevel(logging.INFO)
    try:
        with job_log_context(17):
            log.info("epoch %d", 3)
        log.info("outside")
        try:
            raise ValueError("boom")
        except ValueError:
            log.exception("failed")
    finally:
        log.removeHandler(handler)
    inside, outside, failed = (json.loads(x) for x in stream.getvalue().splitlines())
    assert inside["job_id"] == 17 and inside["message"] == "epoch 3"
    assert "job_id" not in outside
    assert "ValueError: boom" in failed["exc_info"]


def test_quarry_db_upgrade_on_a_fresh_sqlite_file(tmp_path):
    db = tmp_path / "fresh.db"
    env = {**os.environ, "QUARRY_DATABASE_URL": f"sqlite+pysqlite:///{db}",
           "QUARRY_DATA_DIR": str(tmp_path), "QUARRY_LOG_FORMAT": "json"}
    done = subprocess.run([sys.executable, "-m", "app.cli", "db", "upgrade"], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "database is at head" in done.stdout
    engine = create_engine(f"sqlite+pysqlite:///{db}")
    tables = set(inspect(engine).get_table_names())
    engine.dispose()
    assert {"projects", "jobs", "webhook_subscriptions", "webhook_deliveries"} <= tables


@pytest.mark.slow  # 40+ s of DDL on the shared machine's PostgreSQL
def test_quarry_db_upgrade_on_a_fresh_postgresql_database(database_url, tmp_path):
    if not database_url.startswith("postgresql"):
        pytest.skip("set QUARRY_TEST_DATABASE_URL to a PostgreSQL URL")
    url = make_url(database_url)
    name = f"{url.database}_cli_upgrade"
    admin = create_engine(url.set(database="postgres"), isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}"'))
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        target = url.set(database=name).render_as_string(hide_password=False)
        env = {**os.environ, "QUARRY_DATABASE_URL": target, "QUARRY_DATA_DIR": str(tmp_path)}
        done = subprocess.run([sys.executable, "-m", "app.cli", "db", "upgrade"], cwd=ROOT,
                              env=env, capture_output=True, text=True, timeout=600)
        assert done.returncode == 0, done.stderr
        engine = create_engine(target)
        assert "webhook_deliveries" in inspect(engine).get_table_names()
        engine.dispose()
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def _quarry_args(command: list[str]) -> list[str]:
    assert command[0] == "quarry", command
    return command[1:]


def test_compose_services_commands_and_settings_are_real():
    compose = yaml.safe_load((ROOT / "compose.yaml").read_text())
    services = compose["services"]
    assert {"api", "worker", "migrate", "postgres", "redis"} <= set(services)
    assert services["postgres"]["image"].startswith("postgres:15")
    assert services["redis"]["image"].startswith("redis:7")
    parser = build_parser()
    parsed = {name: parser.parse_args(_quarry_args(services[name]["command"]))
              for name in ("api", "worker", "migrate")}
    assert parsed["api"].command == "serve" and parsed["api"].host == "0.0.0.0"
    assert parsed["worker"].command == "worker"
    assert parsed["migrate"].command == "db" and parsed["migrate"].db_command == "upgrade"
    fields = set(Settings.model_fields)
    example = (ROOT / "quarry.env.example").read_text().splitlines()
    env_keys = [line.split("=", 1)[0] for line in example if line and not line.startswith("#")]
    assert "QUARRY_BOOTSTRAP_ADMIN_KEY" in env_keys
    for name in ("api", "worker", "migrate"):
        service = services[name]
        env = service["environment"]
        assert env["QUARRY_JOB_RUNNER"] == "redis"
        assert env["QUARRY_DATABASE_URL"].startswith("postgresql+psycopg://")
        assert env["QUARRY_BROKER_URL"].startswith("redis://redis:")
        for key in [*env, *env_keys]:
            assert key.startswith("QUARRY_") and key[len("QUARRY_"):].lower() in fields, key
        assert service["env_file"] == "quarry.env"
        Settings(**{k[len("QUARRY_"):].lower(): v for k, v in env.items()})  # values validate
    for name in ("api", "worker"):
        assert services[name]["depends_on"]["migrate"]["condition"] == \
            "service_completed_successfully"
    assert "/api/v1/readyz" in " ".join(services["api"]["healthcheck"]["test"])
    assert services["migrate"]["depends_on"]["postgres"]["condition"] == "service_healthy"


def test_dockerfile_cmd_is_a_real_command():
    lines = (ROOT / "Dockerfile").read_text().splitlines()
    (cmd,) = [line for line in lines if line.startswith("CMD ")]
    args = json.loads(cmd[len("CMD "):])
    parsed = build_parser().parse_args(_quarry_args(args))
    assert parsed.command == "serve" and parsed.host == "0.0.0.0" and parsed.port == 8000
    assert not [line for line in lines if line.startswith("ENTRYPOINT")]  # CMD is the command


def test_database_outage_is_a_503_problem_with_retry_after(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from app.config import Settings
    from app.main import build_services, create_app

    settings = Settings(
        data_dir=tmp_path / "data", job_runner="inline", queue_background_refresh=False,
        database_url="postgresql+psycopg://postgres@127.0.0.1:1/none?connect_timeout=2",
    )
    with TestClient(create_app(settings, build_services(settings)),
                    raise_server_exceptions=False) as client:
        r = client.get("/api/v1/projects", headers={"Authorization": "Bearer qk_" + "x" * 40})
    assert r.status_code == 503 and r.headers["content-type"] == "application/problem+json"
    assert r.json()["code"] == "database_unavailable" and r.headers["Retry-After"] == "2"
