"""Concurrent label submissions on PostgreSQL, through two live API processes.

Semantics under test (docs/api.md, ``POST /annotations``): a second, *different* label for an
item without ``replace`` is a 409 ``label_conflict``; the *same* label from a second annotator
is stored as that annotator's annotation; a retry with the same ``Idempotency-Key`` returns the
first annotation (200) and stores nothing. Under a race every request that got a 2xx has its row,
no 2xx is ever silently overwritten, no request fails with a 5xx, and no item is leased twice.
"""

import threading
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
from sqlalchemy import create_engine, text

from tests.factories import API, blob_vectors
from tests.faults.conftest import Proc, Spawner, http_client, service_env

pytestmark = pytest.mark.slow

ROUNDS = 12  # items raced on per scenario


@pytest.fixture
def two_apis(pg_url: str, spawn: Spawner, tmp_path) -> Iterator[list[Proc]]:  # type: ignore[no-untyped-def]
    """Two uvicorn processes (separate engines and caches) on one PostgreSQL database."""
    env = service_env(database_url=pg_url, data_dir=tmp_path / "data", job_runner="thread",
                      scheduler_enabled=False, served_window_seconds=0)
    yield [spawn.api(env), spawn.api(env)]


def _project(client: httpx.Client, n: int = 80) -> int:
    created = client.post(f"{API}/projects", json={
        "name": f"race-{uuid.uuid4().hex[:8]}", "task": "multiclass", "labels": ["a", "b", "c"],
        "modality": "vector"})
    assert created.status_code == 201, created.text
    pid = int(created.json()["id"])
    vectors, _ = blob_vectors(n, 3, seed=3)
    records = [{"external_id": f"x{i}", "vector": v.tolist()} for i, v in enumerate(vectors)]
    imported = client.post(f"{API}/projects/{pid}/items", json=records)
    assert imported.status_code == 201, imported.text
    return pid


def _race(calls: list[Callable[[], httpx.Response]]) -> list[httpx.Response]:
    """Run the calls at once (a barrier releases every thread together); responses in order."""
    barrier = threading.Barrier(len(calls))
    out: list[Any] = [None] * len(calls)

    def run(i: int) -> None:
        barrier.wait()
        try:
            out[i] = calls[i]()
        except httpx.HTTPError as exc:  # a transport error is an answer too (never a 2xx)
            out[i] = exc

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(calls))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    return out


def _item_ids(client: httpx.Client, pid: int, n: int) -> list[int]:
    response = client.get(f"{API}/projects/{pid}/items", params={"limit": n})
    assert response.status_code == 200, response.text
    body = response.json()
    rows = body["items"] if isinstance(body, dict) else body
    return [int(r["id"]) for r in rows][:n]


def _annotations(url: str, pid: int) -> list[tuple[int, int, list[str], str]]:
    engine = create_engine(url)
    with engine.connect() as conn:
        rows = conn.execute(text(
            "SELECT id, item_id, labels, annotator FROM annotations "
            "WHERE project_id = :p AND source = 'human' ORDER BY id"), {"p": pid}).all()
        items = dict(conn.execute(text(
            "SELECT id, labels FROM items WHERE project_id = :p AND status = 'labeled'"),
            {"p": pid}).all())
    engine.dispose()
    return [(int(r[0]), int(r[1]), list(r[2]), str(r[3])) for r in rows], items  # type: ignore[return-value]


def test_two_annotators_racing_on_one_item_never_overwrite_silently(
    two_apis: list[Proc], pg_url: str
) -> None:
    clients = [http_client(p.port) for p in two_apis]  # type: ignore[arg-type]
    pid = _project(clients[0])
    items = _item_ids(clients[0], pid, ROUNDS)
    winners: dict[int, tuple[int, str]] = {}  # item -> (annotation id, label)
    for item_id in items:
        calls = [
            (lambda c=c, label=label, who=who, item_id=item_id: c.post(
                f"{API}/projects/{pid}/annotations",
                json={"item_id": item_id, "label": label, "annotator": who}))
            for c, label, who in ((clients[0], "a", "ann1"), (clients[1], "b", "ann2"))
        ]
        first, second = _race(calls)
        statuses = sorted(r.status_code for r in (first, second))
        assert statuses == [201, 409], (first.text, second.text)
        loser = first if first.status_code == 409 else second
        assert loser.json()["code"] == "label_conflict"
        winner = first if first.status_code == 201 else second
        winners[item_id] = (int(winner.json()["id"]), winner.json()["labels"][0])

    annotations, current = _annotations(pg_url, pid)
    assert len(annotations) == ROUNDS  # the 409s stored nothing
    assert {a[0]: (a[1], a[2][0]) for a in annotations} == {
        ann_id: (item, label) for item, (ann_id, label) in winners.items()}
    assert {item: labels[0] for item, labels in current.items()} == {
        item: label for item, (_, label) in winners.items()}  # item label = the acknowledged one


def test_same_label_from_two_annotators_is_kept_twice(two_apis: list[Proc], pg_url: str) -> None:
    clients = [http_client(p.port) for p in two_apis]  # type: ignore[arg-type]
    pid = _project(clients[0])
    items = _item_ids(clients[0], pid, ROUNDS)
    acked: list[int] = []
    for item_id in items:
        responses = _race([
            lambda c=c, who=who, item_id=item_id: c.post(f"{API}/projects/{pid}/annotations",
                                        json={"item_id": item_id, "label": "c", "annotator": who})
            for c, who in ((clients[0], "ann1"), (clients[1], "ann2"))
        ])
        assert [r.status_code for r in responses] == [201, 201], [r.text for r in responses]
        acked += [int(r.json()["id"]) for r in responses]
    annotations, current = _annotations(pg_url, pid)
    assert sorted(a[0] for a in annotations) == sorted(acked)
    assert Counter(a[1] for a in annotations) == {item: 2 for item in items}
    assert all(labels == ["c"] for labels in current.values()) and len(current) == ROUNDS


def test_a_retried_submission_with_one_idempotency_key_is_stored_once(
    two_apis: list[Proc], pg_url: str
) -> None:
    """The same request sent four times at once (a client retrying on timeout, to either
    server): one 201, the rest 200 with the same annotation, one row."""
    clients = [http_client(p.port) for p in two_apis]  # type: ignore[arg-type]
    pid = _project(clients[0])
    items = _item_ids(clients[0], pid, ROUNDS)
    for item_id in items:
        key = uuid.uuid4().hex
        responses = _race([
            lambda c=c, item_id=item_id, key=key: c.post(f"{API}/projects/{pid}/annotations",
                               json={"item_id": item_id, "label": "a", "annotator": "ann1"},
                               headers={"Idempotency-Key": key})
            for c in (clients[0], clients[1], clients[0], clients[1])
        ])
        statuses = sorted(r.status_code for r in responses)
        assert statuses == [200, 200, 200, 201], [r.text for r in responses]
        assert len({r.json()["id"] for r in responses}) == 1
    annotations, _ = _annotations(pg_url, pid)
    assert Counter(a[1] for a in annotations) == {item: 1 for item in items}


def test_annotators_storming_next_and_label_get_disjoint_items_and_lose_nothing(
    two_apis: list[Proc], pg_url: str
) -> None:
    """16 annotators on two servers loop next -> label; every acknowledged label is stored once,
    no item is served to two annotators, no item has two active leases."""
    clients = [http_client(p.port) for p in two_apis]  # type: ignore[arg-type]
    pid = _project(clients[0], n=200)
    acked: list[tuple[int, int, str]] = []  # (annotation id, item id, annotator)
    served: list[int] = []
    failures: list[str] = []
    lock = threading.Lock()
    barrier = threading.Barrier(16)

    def annotator(i: int) -> None:
        client, who = http_client(two_apis[i % 2].port), f"ann{i}"  # type: ignore[arg-type]
        barrier.wait()
        for _ in range(6):
            nxt = client.get(f"{API}/projects/{pid}/next", params={"annotator": who})
            if nxt.status_code != 200:
                with lock:
                    failures.append(f"next {nxt.status_code} {nxt.text[:200]}")
                continue
            got = nxt.json()["items"][0]
            item_id = int(got["item"]["id"])
            posted = client.post(f"{API}/projects/{pid}/annotations", json={
                "item_id": item_id, "label": "b", "annotator": who, "lease_id": got["lease_id"]})
            with lock:
                served.append(item_id)
                if posted.status_code == 201:
                    acked.append((int(posted.json()["id"]), item_id, who))
                else:
                    failures.append(f"label {posted.status_code} {posted.text[:200]}")
        client.close()

    threads = [threading.Thread(target=annotator, args=(i,)) for i in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not failures, failures
    assert len(served) == 96 and len(set(served)) == 96  # never one item to two annotators
    annotations, _ = _annotations(pg_url, pid)
    assert sorted((a[0], a[1], a[3]) for a in annotations) == sorted(acked)
    engine = create_engine(pg_url)
    with engine.connect() as conn:
        double = conn.execute(text(
            "SELECT item_id FROM leases WHERE project_id = :p AND status = 'active' "
            "GROUP BY item_id HAVING count(*) > 1"), {"p": pid}).all()
    engine.dispose()
    assert double == []
