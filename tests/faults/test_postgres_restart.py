"""A PostgreSQL restart while annotators label: no acknowledged label is lost.

A private cluster (never the machine's server) serves a live uvicorn. Eight annotator threads
loop ``next -> label`` with an ``Idempotency-Key`` per submission, recording every answer; in
the middle the cluster is restarted (``pg_ctl restart -m fast``: sessions are terminated;
``-m immediate``: the postmaster is killed, crash recovery replays the WAL). Afterwards:

- every 2xx label is in the database exactly once, with its item, label and annotator;
- every failed request got an error answer (5xx/4xx or a transport error), never a 2xx without
  a row; retried with its key after the restart it is stored exactly once (201), or, when its
  commit had landed before the connection broke, answered 200 with the stored annotation;
- the service recovers: requests succeed after the restart (``pool_pre_ping``).
"""

import threading
import time
import uuid
from typing import Any

import httpx
import pytest
from sqlalchemy import create_engine, text

from tests.factories import API, blob_vectors
from tests.faults.conftest import PrivateCluster, Spawner, http_client, service_env, wait_for

pytestmark = pytest.mark.slow

ANNOTATORS = 8


def _project(client: httpx.Client, n: int = 600) -> int:
    created = client.post(f"{API}/projects", json={
        "name": f"pgrestart-{uuid.uuid4().hex[:8]}", "task": "multiclass",
        "labels": ["a", "b", "c"], "modality": "vector"})
    assert created.status_code == 201, created.text
    pid = int(created.json()["id"])
    vectors, _ = blob_vectors(n, 3, seed=5)
    records = [{"external_id": f"x{i}", "vector": v.tolist()} for i, v in enumerate(vectors)]
    assert client.post(f"{API}/projects/{pid}/items", json=records).status_code == 201
    return pid


class Annotator(threading.Thread):
    """Loops next -> label until ``stop``, like a careful client: a submission that fails (an
    error status or a broken connection) is retried with the same ``Idempotency-Key`` until it
    is answered. Keeps every acknowledged label and every error seen."""

    def __init__(self, port: int, pid: int, name: str, stop: threading.Event) -> None:
        super().__init__(daemon=True)
        self.client = http_client(port, timeout=15)
        self.pid, self.who, self.stop = pid, name, stop
        self.acked: list[dict[str, Any]] = []  # {id, item_id, label, key, status, tries}
        self.errors: list[Any] = []  # every failed answer: a status code or an exception name
        self.bad: list[str] = []  # answers that break the contract (a 2xx that is not one)
        self.ok_after: list[float] = []  # monotonic times of labels acknowledged first time

    def _submit(self, sent: dict[str, Any], lease_id: str | None) -> tuple[Any, Any]:
        try:
            posted = self.client.post(
                f"{API}/projects/{self.pid}/annotations",
                json={"item_id": sent["item_id"], "label": sent["label"], "annotator": self.who,
                      "lease_id": lease_id},
                headers={"Idempotency-Key": sent["key"]})
        except httpx.HTTPError as exc:
            return type(exc).__name__, None
        return posted.status_code, posted

    def run(self) -> None:
        i = 0
        while not self.stop.is_set():
            try:
                nxt = self.client.get(f"{API}/projects/{self.pid}/next",
                                      params={"annotator": self.who})
            except httpx.HTTPError as exc:
                self.errors.append(type(exc).__name__)
                time.sleep(0.1)
                continue
            if nxt.status_code != 200:
                self.errors.append(nxt.status_code)
                time.sleep(0.1)
                continue
            got = nxt.json()["items"][0]
            sent = {"item_id": int(got["item"]["id"]), "label": "abc"[i % 3],
                    "key": f"{self.who}-{uuid.uuid4().hex}"}
            i += 1
            answer, posted = self._submit(sent, got["lease_id"])
            tries = 1
            deadline = time.monotonic() + 60
            while answer != 201 and time.monotonic() < deadline:
                if answer == 200:  # stored by an attempt whose answer was lost
                    break
                if isinstance(answer, int) and 200 <= answer < 300 or answer in (400, 404, 422):
                    self.bad.append(f"{answer}: {posted.text[:200]}")
                    break
                self.errors.append(answer)
                time.sleep(0.2)
                answer, posted = self._submit(sent, None)  # the retry, same key
                tries += 1
            if answer not in (200, 201):
                self.bad.append(f"never stored: {sent} last answer {answer}")
                continue
            body = posted.json()
            if (body["item_id"], body["labels"]) != (sent["item_id"], [sent["label"]]):
                self.bad.append(f"acknowledged something else: {sent} -> {body}")
            self.acked.append({**sent, "id": int(body["id"]), "status": answer, "tries": tries})
            if tries == 1:
                self.ok_after.append(time.monotonic())


def _stored(url: str, pid: int) -> dict[int, tuple[int, str, str | None, str | None]]:
    engine = create_engine(url)
    with engine.connect() as conn:
        rows = conn.execute(text(
            "SELECT id, item_id, labels, annotator, idempotency_key FROM annotations "
            "WHERE project_id = :p AND source = 'human'"), {"p": pid}).all()
    engine.dispose()
    return {int(r[0]): (int(r[1]), r[2][0], r[3], r[4]) for r in rows}


@pytest.mark.parametrize("mode", ["fast", "immediate"])
def test_postgres_restart_during_labeling_loses_no_acknowledged_label(
    mode: str, private_pg: PrivateCluster, spawn: Spawner, tmp_path
) -> None:  # type: ignore[no-untyped-def]
    env = service_env(database_url=private_pg.url, data_dir=tmp_path / "data",
                      job_runner="thread", scheduler_enabled=False, served_window_seconds=0)
    api = spawn.api(env)
    client = http_client(api.port)  # type: ignore[arg-type]
    pid = _project(client)

    stop = threading.Event()
    annotators = [Annotator(api.port, pid, f"ann{i}", stop) for i in range(ANNOTATORS)]  # type: ignore[arg-type]
    for a in annotators:
        a.start()
    wait_for(lambda: sum(len(a.acked) for a in annotators) >= 40, 60, "labels before the restart")
    before_restart = sum(len(a.acked) for a in annotators)
    private_pg.restart(mode)
    restarted_at = time.monotonic()
    wait_for(lambda: all(any(t > restarted_at + 1 for t in a.ok_after) for a in annotators),
             60, "every annotator to label again after the restart")  # the service recovered
    stop.set()
    for a in annotators:
        a.join(30)
    assert not any(a.is_alive() for a in annotators)

    assert [b for a in annotators for b in a.bad] == []
    acked = [x for a in annotators for x in a.acked]
    errors = [e for a in annotators for e in a.errors]
    assert len(acked) > before_restart  # labeling went on after the restart
    assert errors, "the restart was never noticed by a client"
    assert all(not (isinstance(e, int) and e < 500) for e in errors), errors  # 5xx or transport
    retried = [x for x in acked if x["tries"] > 1]

    stored = _stored(private_pg.url, pid)
    assert len(stored) == len(acked)  # nothing lost, nothing duplicated
    for x in acked:  # every acknowledged label is stored, as acknowledged, once
        assert stored.get(x["id"]) == (x["item_id"], x["label"], x["key"].split("-")[0], x["key"])
    items = [row[0] for row in stored.values()]
    assert len(items) == len(set(items))  # one label per item: no item leased twice
    print(f"{mode}: {len(acked)} labels acknowledged, {len(errors)} errors seen, "
          f"{len(retried)} retried ({sum(x['status'] == 200 for x in retried)} had been stored)")
