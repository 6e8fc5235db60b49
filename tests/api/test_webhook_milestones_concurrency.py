"""``labels.milestone`` under concurrent labelers on a real database (a SQLite file, or
PostgreSQL in the suite's PG mode): every multiple of N fires exactly once.

Like tests/api/test_queue_concurrency.py, each request gets its own connection (two apps stand
in for two server processes); the project is deleted afterwards.
"""

import threading
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from app.config import Settings
from app.main import build_services, create_app
from tests.factories import API, AUTH, BOOTSTRAP_KEY, blob_vectors

LABELERS = 8
EACH = 3
EVERY = 4


@pytest.fixture
def clients(tmp_path: Path, database_url: str) -> Iterator[list[TestClient]]:
    settings = Settings(
        data_dir=tmp_path / "data", database_url=database_url, job_runner="inline",
        bootstrap_admin_key=BOOTSTRAP_KEY,
    )
    apps = [create_app(settings, build_services(settings)) for _ in range(2)]
    with TestClient(apps[0], headers=AUTH) as first, TestClient(apps[1], headers=AUTH) as second:
        yield [first, second]


def test_every_multiple_fires_once_under_concurrent_labelers(clients: list[TestClient]) -> None:
    client = clients[0]
    created = client.post(f"{API}/projects", json={
        "name": f"milestones-{uuid.uuid4().hex[:8]}", "task": "multiclass",
        "labels": ["a", "b", "c"], "modality": "vector"})
    pid = int(created.json()["id"])
    vectors, _ = blob_vectors(LABELERS * EACH + 10, 3, seed=3)
    records = [{"external_id": f"x{i}", "vector": v.tolist()} for i, v in enumerate(vectors)]
    assert client.post(f"{API}/projects/{pid}/items", json=records).status_code == 201
    hook = client.post(f"{API}/projects/{pid}/webhooks", json={
        "url": "http://127.0.0.1:9/hook", "events": ["labels.milestone"],
        "every_n_labels": EVERY}).json()
    errors: list[str] = []
    start = threading.Barrier(LABELERS)

    def label(http: TestClient, name: str) -> None:
        start.wait()
        for _ in range(EACH):
            served = http.get(f"{API}/projects/{pid}/next", params={"annotator": name})
            if served.status_code != 200:
                errors.append(served.text)
                return
            lease = served.json()["items"][0]
            posted = http.post(f"{API}/projects/{pid}/annotations", json={
                "item_id": lease["item"]["id"], "label": "a", "lease_id": lease["lease_id"]})
            if posted.status_code != 201:
                errors.append(posted.text)

    threads = [threading.Thread(target=label, args=(clients[i % 2], f"l{i}"))
               for i in range(LABELERS)]
    try:
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=120)
        assert errors == []
        rows = client.get(f"{API}/projects/{pid}/webhooks/{hook['id']}/deliveries").json()
        fired = sorted(r["payload"]["n_labels"] for r in rows)
        assert fired == list(range(EVERY, LABELERS * EACH + 1, EVERY))
    finally:
        assert client.delete(f"{API}/projects/{pid}").status_code == 204
