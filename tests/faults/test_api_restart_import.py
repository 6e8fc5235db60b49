"""An API restart in the middle of a large import leaves no partial import.

The API (uvicorn, PostgreSQL, the default ``process`` job runner: the import job runs in a
spawned child of the API) takes 4,000 texts of Banking77's train.csv as a file upload; above
``import_inline_max`` rows it is embedded (MiniLM) by a background job that stores every row in
one transaction at the end.

- ``kill -9`` of the API's process group (the API and its job child) while the job embeds, then
  a new API on the same database and data dir: no item of the import is visible (items table,
  pool size, counts), the job is failed by the reaper (never left running), and the same file
  imports completely afterwards, once.
- ``SIGTERM`` (graceful) of the API while a smaller import runs: shutdown waits for the running
  job, which completes; after the restart the import is there exactly once.
"""

import csv
import signal
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import create_engine, text

from tests.factories import API
from tests.faults.conftest import Spawner, http_client, service_env, wait_for

pytestmark = pytest.mark.slow

FINISHED = ("succeeded", "failed", "cancelled")


@pytest.fixture
def train_csv(shared_data: Path) -> Path:
    return shared_data / "banking77" / "train.csv"


def _env(pg_url: str, tmp_path: Path) -> dict[str, str]:
    return service_env(
        database_url=pg_url, data_dir=tmp_path / "data", job_runner="process",
        job_heartbeat_seconds=0.5, job_stale_seconds=4, scheduler_poll_seconds=0.5,
        import_inline_max=256, mc_dropout_samples=0,
    )


def _project(client: httpx.Client) -> int:
    created = client.post(f"{API}/projects", json={
        "name": f"import-{uuid.uuid4().hex[:8]}", "task": "multiclass",
        "labels": ["a", "b"], "modality": "text"})
    assert created.status_code == 201, created.text
    return int(created.json()["id"])


def _upload(client: httpx.Client, pid: int, path: Path) -> int:
    with path.open("rb") as fh:
        response = client.post(f"{API}/projects/{pid}/items", params={"ignore_labels": "true"},
                               files={"file": (path.name, fh, "text/csv")}, timeout=120)
    assert response.status_code == 202, response.text  # a background job
    return int(response.json()["job_id"])


def _job(client: httpx.Client, job_id: int) -> dict[str, Any]:
    response = client.get(f"{API}/jobs/{job_id}")
    assert response.status_code == 200, response.text
    return response.json()  # type: ignore[no-any-return]


def _db_counts(url: str, pid: int) -> tuple[int, int, int, int]:
    """(items, distinct external ids, annotations, projects.pool_size) of the project."""
    engine = create_engine(url)
    with engine.connect() as conn:
        items, distinct = conn.execute(text(
            "SELECT count(*), count(DISTINCT external_id) FROM items WHERE project_id = :p"),
            {"p": pid}).one()
        annotations = conn.scalar(text(
            "SELECT count(*) FROM annotations WHERE project_id = :p"), {"p": pid})
        pool_size = conn.scalar(text("SELECT pool_size FROM projects WHERE id = :p"), {"p": pid})
    engine.dispose()
    return int(items), int(distinct), int(annotations or 0), int(pool_size)


def _head(path: Path, rows: int, out: Path) -> Path:
    """The header and the first ``rows`` rows of a CSV (rows without embedded newlines)."""
    with path.open(encoding="utf-8") as src:
        out.write_text("".join(line for _, line in zip(range(rows + 1), src, strict=False)),
                       encoding="utf-8")
    return out


def _rows(path: Path) -> int:
    with path.open(encoding="utf-8", newline="") as fh:
        return sum(1 for _ in csv.DictReader(fh))


def test_kill_9_of_the_api_mid_import_leaves_no_partial_import(
    pg_url: str, spawn: Spawner, tmp_path: Path, train_csv: Path
) -> None:
    env = _env(pg_url, tmp_path)
    api = spawn.api(env)
    client = http_client(api.port)  # type: ignore[arg-type]
    pid = _project(client)
    data = _head(train_csv, 4000, tmp_path / "banking77_4000.csv")
    job_id = _upload(client, pid, data)

    def embedding() -> dict[str, Any] | None:
        job = _job(client, job_id)
        assert job["status"] in ("queued", "running"), job  # it must not finish first
        return job if job["status"] == "running" and 0.05 < job["progress"] < 0.9 else None

    wait_for(embedding, 300, "the import job to embed")
    api.kill_group(signal.SIGKILL)  # the API and its job child, no chance to clean up
    api.wait(30)
    assert _db_counts(pg_url, pid) == (0, 0, 0, 0)

    again = spawn.api(env)
    client = http_client(again.port)  # type: ignore[arg-type]
    job = wait_for(lambda: (j := _job(client, job_id))["status"] in FINISHED and j, 60,
                   "the reaper to fail the dead import")
    assert job["status"] == "failed" and "worker lost" in job["error"], job  # type: ignore[index]
    counts = client.get(f"{API}/projects/{pid}").json()["counts"]
    assert counts["items"] == 0 and counts["labeled"] == 0
    listed = client.get(f"{API}/projects/{pid}/items", params={"limit": 5}).json()
    assert listed["items"] == []
    assert _db_counts(pg_url, pid) == (0, 0, 0, 0)

    n = _rows(data)  # the same file imports completely afterwards, exactly once
    retry = _upload(client, pid, data)
    job = wait_for(lambda: (j := _job(client, retry))["status"] in FINISHED and j, 600,
                   "the second import")
    assert job["status"] == "succeeded", job  # type: ignore[index]
    assert _db_counts(pg_url, pid) == (n, n, 0, n)
    assert _job(client, job_id)["status"] == "failed"  # the dead one never came back


def test_sigterm_of_the_api_mid_import_finishes_the_import_once(
    pg_url: str, spawn: Spawner, tmp_path: Path, train_csv: Path
) -> None:
    small = _head(train_csv, 1200, tmp_path / "banking77_head.csv")
    n = _rows(small)
    env = _env(pg_url, tmp_path)
    api = spawn.api(env)
    client = http_client(api.port)  # type: ignore[arg-type]
    pid = _project(client)
    job_id = _upload(client, pid, small)
    wait_for(lambda: _job(client, job_id)["status"] != "queued", 120, "the import to start")
    api.popen.send_signal(signal.SIGTERM)  # the server only: a graceful shutdown
    # uvicorn shuts down (the lifespan waits for the running job), then re-raises the signal
    assert api.wait(300) in (0, -signal.SIGTERM), api.tail()

    again = spawn.api(env)
    client = http_client(again.port)  # type: ignore[arg-type]
    job = _job(client, job_id)
    assert job["status"] == "succeeded", job
    assert _db_counts(pg_url, pid) == (n, n, 0, n)
    assert client.get(f"{API}/projects/{pid}").json()["counts"]["items"] == n
