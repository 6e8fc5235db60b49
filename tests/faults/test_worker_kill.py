"""``kill -9`` of a ``quarry worker`` mid-training, on PostgreSQL and Redis, with annotators
labeling all along, through a live API (uvicorn, ``job_runner=redis``; it runs the reaper).

Extends ``tests/jobs/test_broker.py`` (which runs on the suite's database, SQLite by default):
here always PostgreSQL, the API is a separate process, and labels keep arriving while the
worker trains and dies. After the kill: every label is there (count and checksum of the
annotations and the items' current labels), the active checkpoint is the one before, the dead
job wrote no checkpoint row and no artifact directory, and the job ends failed ("worker lost").
Dramatiq redelivers the dead worker's message to the next worker; it must not run the job
again (the claim is conditional on ``queued``), and that worker trains the next job normally.
"""

import hashlib
import signal
import threading
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import create_engine, text

from tests.factories import API, make_pool
from tests.faults.conftest import Spawner, http_client, service_env, wait_for

pytestmark = pytest.mark.slow

LONG_TRAINING = {"epochs": 10_000, "semi_supervised": {"method": "none"}}
FINISHED = ("succeeded", "failed", "cancelled")


def _job(client: httpx.Client, job_id: int) -> dict[str, Any]:
    response = client.get(f"{API}/jobs/{job_id}")
    assert response.status_code == 200, response.text
    return response.json()  # type: ignore[no-any-return]


def _finished(client: httpx.Client, job_id: int) -> dict[str, Any] | None:
    job = _job(client, job_id)
    return job if job["status"] in FINISHED else None


def _train(client: httpx.Client, pid: int, body: dict[str, Any]) -> int:
    response = client.post(f"{API}/projects/{pid}/train", json=body)
    assert response.status_code == 202, response.text
    return int(response.json()["id"])


def _state(url: str, pid: int) -> dict[str, Any]:
    """Annotations, a checksum of the human/imported ones, items' labels, the active checkpoint,
    checkpoint ids and their jobs."""
    engine = create_engine(url)
    with engine.connect() as conn:
        annotations = conn.execute(text(
            "SELECT id, item_id, labels::text, source, annotator FROM annotations "
            "WHERE project_id = :p ORDER BY id"), {"p": pid}).all()
        items = conn.execute(text(
            "SELECT id, status, labels::text, label_source FROM items WHERE project_id = :p "
            "ORDER BY id"), {"p": pid}).all()
        active = conn.scalar(text("SELECT active_checkpoint_id FROM projects WHERE id = :p"),
                             {"p": pid})
        checkpoints = conn.execute(text(
            "SELECT id, job_id FROM checkpoints WHERE project_id = :p ORDER BY id"),
            {"p": pid}).all()
    engine.dispose()
    human = [tuple(r) for r in annotations if r[3] != "pseudo"]  # pseudo-labels are retrained
    digest = hashlib.sha256(repr(human).encode()).hexdigest()
    return {
        "annotations": [tuple(r) for r in annotations], "n_annotations": len(annotations),
        "checksum": digest, "items": [tuple(r) for r in items], "active": active,
        "checkpoints": [tuple(r) for r in checkpoints],
    }


class Labeler(threading.Thread):
    """Labels served items (next -> label) until stopped; keeps the acknowledged ids."""

    def __init__(self, port: int, pid: int, labels: list[str]) -> None:
        super().__init__(daemon=True)
        self.client = http_client(port)
        self.pid, self.labels = pid, labels
        self.stop = threading.Event()
        self.acked: list[int] = []
        self.errors: list[str] = []

    def run(self) -> None:
        i = 0
        while not self.stop.wait(0.05):
            nxt = self.client.get(f"{API}/projects/{self.pid}/next", params={"annotator": "bob"})
            if nxt.status_code != 200:
                self.errors.append(f"next {nxt.status_code} {nxt.text[:200]}")
                continue
            got = nxt.json()["items"]
            if not got:
                return
            posted = self.client.post(f"{API}/projects/{self.pid}/annotations", json={
                "item_id": got[0]["item"]["id"], "label": self.labels[i % len(self.labels)],
                "annotator": "bob", "lease_id": got[0]["lease_id"]})
            i += 1
            if posted.status_code == 201:
                self.acked.append(int(posted.json()["id"]))
            else:
                self.errors.append(f"label {posted.status_code} {posted.text[:200]}")


def test_kill_9_of_a_worker_mid_training_keeps_labels_and_the_active_checkpoint(
    pg_url: str, redis_url: str, redis_namespace: str, spawn: Spawner, tmp_path: Path
) -> None:
    data_dir = tmp_path / "data"
    env = service_env(
        database_url=pg_url, data_dir=data_dir, job_runner="redis", broker_url=redis_url,
        broker_namespace=redis_namespace, job_queue=f"{redis_namespace}-jobs",
        job_heartbeat_seconds=0.5, job_stale_seconds=4, scheduler_poll_seconds=0.5,
        mc_dropout_samples=0,
    )
    api = spawn.api(env)
    client = http_client(api.port)  # type: ignore[arg-type]
    project = client.post(f"{API}/projects", json={
        "name": f"kill-{uuid.uuid4().hex[:8]}", "task": "multiclass", "labels": ["a", "b", "c"],
        "modality": "vector"}).json()
    pid = int(project["id"])
    make_pool(client, project, n=600, labeled=90)  # type: ignore[arg-type]

    worker = spawn.worker(env)
    first = _train(client, pid, {"epochs": 20})
    job = wait_for(lambda: _finished(client, first), 180, "the worker to train")
    assert job["status"] == "succeeded", job  # type: ignore[index]
    assert job["worker"].endswith(f":{worker.pid}")  # type: ignore[index]
    before = _state(pg_url, pid)
    assert before["active"] is not None and len(before["checkpoints"]) == 1

    labeler = Labeler(api.port, pid, project["labels"])  # type: ignore[arg-type]
    labeler.start()
    doomed = _train(client, pid, LONG_TRAINING)

    def training() -> dict[str, Any] | None:
        job = _job(client, doomed)
        assert job["status"] in ("queued", "running"), job
        return job if job["status"] == "running" and job["progress"] > 0.02 else None

    wait_for(training, 120, "training to run")
    wait_for(lambda: len(labeler.acked) >= 5, 60, "labels during the training")
    worker.kill_group(signal.SIGKILL)
    worker.wait(30)
    job = wait_for(lambda: _finished(client, doomed), 60, "the reaper")
    assert job["status"] == "failed" and "worker lost" in job["error"], job  # type: ignore[index]
    wait_for(lambda: len(labeler.acked) >= 10, 60, "labels after the kill")
    labeler.stop.set()
    labeler.join(30)
    assert labeler.errors == []

    after = _state(pg_url, pid)
    assert after["active"] == before["active"]  # the active checkpoint is untouched
    assert after["checkpoints"] == before["checkpoints"]  # the dead job stored no checkpoint
    assert not (data_dir / "projects" / str(pid) / "checkpoints" / f"job{doomed}").exists()
    # no label lost or changed: the old annotations are a prefix, plus every acknowledged one
    assert after["annotations"][: before["n_annotations"]] == before["annotations"]
    new_ids = [row[0] for row in after["annotations"][before["n_annotations"]:]]
    assert new_ids == sorted(labeler.acked)
    assert after["n_annotations"] == before["n_annotations"] + len(labeler.acked)
    labeled = {row[0] for row in after["items"] if row[1] == "labeled"}
    assert {row[1] for row in after["annotations"] if row[3] != "pseudo"} <= labeled
    final_checksum = after["checksum"]

    spawn.worker(env)  # gets the redelivered message of the dead one and the next job
    again = _train(client, pid, {"epochs": 20})
    job = wait_for(lambda: _finished(client, again), 180, "training after the crash")
    assert job["status"] == "succeeded", job  # type: ignore[index]
    assert _job(client, doomed)["status"] == "failed"  # never run a second time
    last = _state(pg_url, pid)
    assert last["checksum"] == final_checksum  # training never touches the labels
    assert last["active"] != before["active"]
    assert [c[1] for c in last["checkpoints"]] == [first, again]
