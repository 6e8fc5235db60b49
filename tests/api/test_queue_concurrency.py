"""Many annotators at once on a real database (a SQLite file, or PostgreSQL in the suite's PG
mode): ``/next`` never hands one item to two annotators.

Unlike the other API tests this one cannot run inside one rolled-back connection: every
request must get its own connection and transaction, as in production. Two apps with separate
service containers (engines, ranking caches) stand in for two server processes, so both rank
the same items and only the database's conditional lease UPDATE keeps annotators apart. The
project is deleted afterwards.
"""

import threading
import uuid
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from app.config import Settings
from app.main import build_services, create_app
from tests.factories import API, AUTH, BOOTSTRAP_KEY, blob_vectors

N_PROCESSES = 2
ANNOTATORS_PER_PROCESS = 8
ITEMS_EACH = 6
POOL = 120


@pytest.fixture
def clients(tmp_path: Path, database_url: str) -> Iterator[list[TestClient]]:
    """One TestClient per simulated server process, all on the migrated test database."""
    settings = Settings(
        data_dir=tmp_path / "data", database_url=database_url, job_runner="inline",
        served_window_seconds=0, bootstrap_admin_key=BOOTSTRAP_KEY,
    )
    apps = [create_app(settings, build_services(settings)) for _ in range(N_PROCESSES)]
    with (
        TestClient(apps[0], headers=AUTH) as first,
        TestClient(apps[1], headers=AUTH) as second,
    ):
        yield [first, second]


def _make_project(client: TestClient) -> int:
    name = f"concurrency-{uuid.uuid4().hex[:8]}"
    created = client.post(f"{API}/projects", json={
        "name": name, "task": "multiclass", "labels": ["a", "b", "c"], "modality": "vector"})
    assert created.status_code == 201, created.text
    pid = int(created.json()["id"])
    vectors, _ = blob_vectors(POOL, 3, seed=1)
    records = [{"external_id": f"x{i}", "vector": v.tolist()} for i, v in enumerate(vectors)]
    imported = client.post(f"{API}/projects/{pid}/items", json=records)
    assert imported.status_code == 201, imported.text
    return pid


def test_concurrent_annotators_are_never_served_the_same_item(clients: list[TestClient]) -> None:
    pid = _make_project(clients[0])
    served: list[tuple[str, int]] = []  # (annotator, item id) in serving order
    errors: list[str] = []
    lock = threading.Lock()
    start = threading.Barrier(N_PROCESSES * ANNOTATORS_PER_PROCESS)

    def annotate(client: TestClient, annotator: str) -> None:
        start.wait()
        for _ in range(ITEMS_EACH):
            response = client.get(f"{API}/projects/{pid}/next", params={"annotator": annotator})
            if response.status_code != 200:
                with lock:
                    errors.append(f"{annotator}: /next {response.status_code} {response.text}")
                return
            item = response.json()["items"][0]
            with lock:
                served.append((annotator, item["item"]["id"]))
            posted = client.post(f"{API}/projects/{pid}/annotations", json={
                "item_id": item["item"]["id"], "label": "a", "lease_id": item["lease_id"]})
            if posted.status_code != 201:
                with lock:
                    errors.append(f"{annotator}: annotation {posted.status_code} {posted.text}")
                return

    threads = [
        threading.Thread(target=annotate, args=(clients[p], f"ann-{p}-{a}"))
        for p in range(N_PROCESSES)
        for a in range(ANNOTATORS_PER_PROCESS)
    ]
    try:
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=120)
        assert not any(t.is_alive() for t in threads), "annotators did not finish"
        assert errors == []
        expected = N_PROCESSES * ANNOTATORS_PER_PROCESS * ITEMS_EACH
        assert len(served) == expected
        twice = {item: n for item, n in Counter(i for _, i in served).items() if n > 1}
        assert twice == {}, f"items served to two annotators: {twice}"
        leases = clients[1].get(f"{API}/projects/{pid}/leases", params={"limit": 1000})
        assert leases.status_code == 200
        assert Counter(lease["item_id"] for lease in leases.json()).most_common(1)[0][1] == 1
    finally:
        assert clients[0].delete(f"{API}/projects/{pid}").status_code == 204
