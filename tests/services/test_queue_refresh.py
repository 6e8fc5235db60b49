"""Background ranking refresh: /next serves the ranking it has while a new one is computed off
the request path; SQLite read-only transactions never wait for the writer lock.

These tests need real connections per thread (a SQLite file of their own), not the suite's
single rolled-back connection.
"""

import threading
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from app.config import Settings
from app.db import make_engine, make_sessionmaker, read_only, transaction
from app.main import build_services, create_app
from app.migrate import upgrade_to_head
from app.models import Checkpoint, Project, QueueRanking
from app.services import queue
from app.storage import atomic_write_npy
from tests.factories import API, AUTH, BOOTSTRAP_KEY, blob_vectors


@pytest.fixture
def client(tmp_path: Path) -> Iterator[TestClient]:
    settings = Settings(
        data_dir=tmp_path / "data", database_url=f"sqlite+pysqlite:///{tmp_path / 'q.db'}",
        job_runner="inline", bootstrap_admin_key=BOOTSTRAP_KEY,
    )
    upgrade_to_head(settings.database_url)
    with TestClient(create_app(settings, build_services(settings)), headers=AUTH) as c:
        yield c


@pytest.fixture
def compute_threads(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Names of the threads that computed a ranking, in order."""
    names: list[str] = []
    real = queue.compute_ranking

    def recorded(*args, **kwargs):  # type: ignore[no-untyped-def]
        names.append(threading.current_thread().name)
        return real(*args, **kwargs)

    monkeypatch.setattr(queue, "compute_ranking", recorded)
    return names


def _import(client: TestClient, pid: int, start: int, n: int) -> None:
    vectors, _ = blob_vectors(start + n, 3, seed=2)
    records = [{"external_id": f"x{i}", "vector": vectors[i].tolist()}
               for i in range(start, start + n)]
    assert client.post(f"{API}/projects/{pid}/items", json=records).status_code == 201


def _project(client: TestClient, n: int) -> int:
    created = client.post(f"{API}/projects", json={
        "name": "refresh", "task": "multiclass", "labels": ["a", "b", "c"], "modality": "vector"})
    pid = int(created.json()["id"])
    _import(client, pid, 0, n)
    return pid


def _label_next(client: TestClient, pid: int) -> dict:  # type: ignore[type-arg]
    served = client.get(f"{API}/projects/{pid}/next", params={"annotator": "ann"})
    assert served.status_code == 200, served.text
    lease = served.json()["items"][0]
    posted = client.post(f"{API}/projects/{pid}/annotations", json={
        "item_id": lease["item"]["id"], "label": "a", "lease_id": lease["lease_id"]})
    assert posted.status_code == 201, posted.text
    return lease  # type: ignore[no-any-return]


def _records(client: TestClient, pid: int) -> int:
    with make_sessionmaker(make_engine(client.app.state.services.settings))() as session:
        return int(session.scalar(
            select(func.count()).select_from(QueueRanking).where(QueueRanking.project_id == pid)
        ) or 0)


def test_running_low_refills_in_the_background(
    client: TestClient, compute_threads: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(queue, "REFILL_BELOW", queue.RANKING_SIZE - 2)
    services = client.app.state.services
    pid = _project(client, 300)
    served = [_label_next(client, pid)["item"]["id"] for _ in range(2)]
    assert len(compute_threads) == 1  # the cold one, awaited by the first /next
    served.append(_label_next(client, pid)["item"]["id"])  # 197 left: below REFILL_BELOW
    assert services.refresher.wait_idle()
    assert len(compute_threads) == 2
    assert all(name.startswith("quarry-rank") for name in compute_threads)  # never inline
    with make_sessionmaker(make_engine(services.settings))() as session:
        key = queue.ranking_key(session.get(Project, pid))
    fresh = services.rankings.get(key)
    assert fresh is not None and not set(served) & set(fresh.item_ids.tolist())
    assert _records(client, pid) == 2  # the refill is recorded like an inline ranking
    served += [_label_next(client, pid)["item"]["id"] for _ in range(5)]
    assert len(set(served)) == len(served)


def test_new_key_serves_the_previous_ranking_meanwhile(
    client: TestClient, compute_threads: list[str]
) -> None:
    services = client.app.state.services
    pid = _project(client, 300)
    first = _label_next(client, pid)
    assert len(compute_threads) == 1
    _import(client, pid, 300, 10)  # the pool grew: a new ranking key
    second = _label_next(client, pid)
    assert second["acquisition"]["seed"] == first["acquisition"]["seed"]  # the old ranking
    assert services.refresher.wait_idle()
    assert len(compute_threads) == 2
    assert all(name.startswith("quarry-rank") for name in compute_threads)
    third = _label_next(client, pid)
    assert len({first["item"]["id"], second["item"]["id"], third["item"]["id"]}) == 3


def test_cold_requests_share_one_computation(
    client: TestClient, compute_threads: list[str]
) -> None:
    pid = _project(client, 300)
    served: list[int] = []
    barrier = threading.Barrier(6)

    def annotator(i: int) -> None:
        barrier.wait()
        response = client.get(f"{API}/projects/{pid}/next", params={"annotator": f"a{i}"})
        assert response.status_code == 200, response.text
        served.append(response.json()["items"][0]["item"]["id"])

    threads = [threading.Thread(target=annotator, args=(i,)) for i in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(served) == 6 == len(set(served))
    assert len(compute_threads) == 1


def test_a_starting_process_warms_the_rankings_of_trained_projects(
    client: TestClient, compute_threads: list[str]
) -> None:
    services = client.app.state.services
    pid = _project(client, 50)
    assert services.refresher.warm() == 0  # no active checkpoint: nothing worth warming
    folder = services.store.checkpoint_dir(pid, 1)
    atomic_write_npy(folder / "probs.npy", np.full((50, 3), 1 / 3, dtype=np.float32))
    with transaction(services.sessionmaker) as session:
        project = session.get(Project, pid)
        checkpoint = Checkpoint(
            project_id=pid, version=1, path=str(folder), pool_size=50, n_labeled=0
        )
        session.add(checkpoint)
        session.flush()
        project.active_checkpoint_id = checkpoint.id
        key = queue.ranking_key(project)
    assert services.refresher.warm() == 1
    assert services.refresher.wait_idle()
    assert compute_threads == [compute_threads[0]] and compute_threads[0].startswith("quarry-rank")
    assert services.rankings.get(key) is not None


def test_explicit_invalidation_drops_the_previous_ranking() -> None:
    cache = queue.RankingCache()
    ranking = queue.Ranking(
        item_ids=np.arange(3), scores=np.zeros(3),
        strategy="random", checkpoint_id=None, seed=1,
    )
    cache.put((7, None, 3, "margin"), ranking)
    cache.retire(7)
    assert cache.get((7, None, 3, "margin")) is None and cache.latest(7) is ranking
    cache.invalidate(7)
    assert cache.latest(7) is None


def test_sqlite_read_only_does_not_wait_for_the_writer(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path, database_url=f"sqlite+pysqlite:///{tmp_path / 'r.db'}")
    upgrade_to_head(settings.database_url)
    factory = make_sessionmaker(make_engine(settings))
    read: list[int] = []
    with transaction(factory) as writer:
        writer.add(Project(name="w", task="multiclass", labels=["a"], modality="vector",
                           embedder="vector", feature_dim=2, pool_size=0,
                           queue_strategy="margin", settings={}))
        writer.flush()  # holds the writer lock until the commit below

        def reader() -> None:
            with read_only(factory) as session:
                read.append(int(session.scalar(select(func.count()).select_from(Project)) or 0))

        thread = threading.Thread(target=reader)
        thread.start()
        thread.join(timeout=5)
        assert not thread.is_alive(), "the read-only transaction waited for the writer"
    assert read == [0]  # a snapshot without the uncommitted row
