"""Webhooks: subscriptions over the API, the outbox written with what caused each event, and
signed deliveries to a real local HTTP receiver (retries, give-up, redelivery)."""

import json
import threading
from collections.abc import Iterator
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from sqlalchemy import select, update

from app.jobs.common import reap_stale, run_guarded
from app.models import Checkpoint, Job, JobStatus, Project, WebhookDelivery
from app.services.queue import now_utc
from app.services.webhooks_delivery import backoff_seconds, deliver_due, sign, verify
from tests.factories import API, label_items, make_pool, make_project


class Receiver:
    """An http.server on a free loopback port that records requests and answers ``codes``
    in turn (the last one repeats)."""

    def __init__(self, codes: list[int]) -> None:
        self.codes = list(codes)
        self.requests: list[dict[str, Any]] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's name
                body = self.rfile.read(int(self.headers["Content-Length"]))
                receiver.requests.append({"headers": dict(self.headers), "body": body,
                                          "path": self.path})
                code = receiver.codes.pop(0) if len(receiver.codes) > 1 else receiver.codes[0]
                self.send_response(code)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, *_args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver([200])
    yield r
    r.close()


@pytest.fixture
def client(client, services):  # type: ignore[no-untyped-def]
    """conftest's client; with an admin key of its own until conftest's carries one."""
    if "Authorization" not in client.headers:
        from app.main import ensure_bootstrap_key

        secret = "ops-webhook-tests-admin-key-0123456789"
        ensure_bootstrap_key(services, secret)
        client.headers["Authorization"] = f"Bearer {secret}"
    return client


def _subscribe(client, pid: int, url: str, events: list[str], **extra: Any) -> dict[str, Any]:
    response = client.post(f"{API}/projects/{pid}/webhooks",
                           json={"url": url, "events": events, **extra})
    assert response.status_code == 201, response.text
    return response.json()


def _deliveries(client, pid: int, wid: int) -> list[dict[str, Any]]:
    response = client.get(f"{API}/projects/{pid}/webhooks/{wid}/deliveries")
    assert response.status_code == 200, response.text
    return response.json()


def test_crud_secret_once_and_url_validation(client, receiver):
    pid = make_project(client, name="hooks")["id"]
    created = _subscribe(client, pid, receiver.url, ["job.finished", "job.failed"])
    assert len(created["secret"]) == 64 and int(created["secret"], 16) >= 0
    wid = created["id"]
    shown = client.get(f"{API}/projects/{pid}/webhooks/{wid}").json()
    assert "secret" not in shown and shown["events"] == ["job.finished", "job.failed"]
    assert [w["id"] for w in client.get(f"{API}/projects/{pid}/webhooks").json()] == [wid]
    for bad in ("ftp://example.org/x", "file:///etc/passwd", "javascript:alert(1)", "http://"):
        response = client.post(f"{API}/projects/{pid}/webhooks",
                               json={"url": bad, "events": ["job.failed"]})
        assert response.status_code == 422, bad
        assert response.headers["content-type"].startswith("application/problem+json")
        assert "url" in response.json()["detail"], response.json()
    unknown = client.post(f"{API}/projects/{pid}/webhooks",
                          json={"url": receiver.url, "events": ["everything"]})
    assert unknown.status_code == 422 and "events" in unknown.json()["detail"]
    no_n = client.post(f"{API}/projects/{pid}/webhooks",
                       json={"url": receiver.url, "events": ["labels.milestone"]})
    assert no_n.status_code == 422 and no_n.json()["context"]["field"] == "every_n_labels"
    patched = client.patch(f"{API}/projects/{pid}/webhooks/{wid}",
                           json={"active": False, "events": ["job.failed"]})
    assert patched.status_code == 200
    assert patched.json()["active"] is False and patched.json()["events"] == ["job.failed"]
    other = make_project(client, name="other")["id"]
    assert client.get(f"{API}/projects/{other}/webhooks/{wid}").status_code == 404
    assert client.delete(f"{API}/projects/{pid}/webhooks/{wid}").status_code == 204
    assert client.get(f"{API}/projects/{pid}/webhooks/{wid}").status_code == 404


def test_ping_is_signed_and_verifies(client, services, receiver):
    pid = make_project(client, name="ping")["id"]
    hook = _subscribe(client, pid, receiver.url, ["job.finished"])
    queued = client.post(f"{API}/projects/{pid}/webhooks/{hook['id']}/ping")
    assert queued.status_code == 202 and queued.json()["status"] == "pending"
    attempts = deliver_due(services.sessionmaker, services.settings)
    assert [a.status for a in attempts] == ["delivered"]
    (request,) = receiver.requests
    headers, body = request["headers"], request["body"]
    assert headers["X-Quarry-Event"] == "ping"
    assert headers["X-Quarry-Delivery"] == str(queued.json()["id"])
    assert headers["X-Quarry-Signature"] == sign(hook["secret"], int(headers["X-Quarry-Timestamp"]),
                                                 body)
    assert verify(hook["secret"], headers["X-Quarry-Timestamp"], body,
                  headers["X-Quarry-Signature"])
    assert not verify("wrong-secret", headers["X-Quarry-Timestamp"], body,
                      headers["X-Quarry-Signature"])
    assert not verify(hook["secret"], headers["X-Quarry-Timestamp"], body + b" ",
                      headers["X-Quarry-Signature"])
    assert not verify(hook["secret"], headers["X-Quarry-Timestamp"], body,
                      headers["X-Quarry-Signature"], now=int(headers["X-Quarry-Timestamp"]) + 301)
    envelope = json.loads(body)
    assert envelope["event"] == "ping" and envelope["project_id"] == pid
    (logged,) = _deliveries(client, pid, hook["id"])
    assert logged["status"] == "delivered" and logged["attempts"] == 1
    assert logged["last_status_code"] == 200 and logged["delivered_at"]
    assert deliver_due(services.sessionmaker, services.settings) == []  # sent once


def test_retry_after_500_then_success_and_redeliver(client, services):
    receiver = Receiver([500, 200])
    try:
        services.settings.webhook_backoff_seconds = 0.0
        pid = make_project(client, name="retry")["id"]
        hook = _subscribe(client, pid, receiver.url, ["job.finished"])
        client.post(f"{API}/projects/{pid}/webhooks/{hook['id']}/ping")
        first = deliver_due(services.sessionmaker, services.settings)
        assert [(a.status, a.status_code) for a in first] == [("pending", 500)]
        (row,) = _deliveries(client, pid, hook["id"])
        assert row["attempts"] == 1 and row["last_status_code"] == 500
        assert "HTTP 500" in row["last_error"]
        second = deliver_due(services.sessionmaker, services.settings)
        assert [(a.status, a.status_code) for a in second] == [("delivered", 200)]
        (row,) = _deliveries(client, pid, hook["id"])
        assert row["status"] == "delivered" and row["attempts"] == 2
        # both attempts carried the same delivery id and body
        assert receiver.requests[0]["body"] == receiver.requests[1]["body"]
        again = client.post(
            f"{API}/projects/{pid}/webhooks/{hook['id']}/deliveries/{row['id']}/redeliver"
        )
        assert again.status_code == 202 and again.json()["id"] != row["id"]
        assert [a.status for a in deliver_due(services.sessionmaker, services.settings)] == [
            "delivered"]
        assert len(receiver.requests) == 3
        assert len(_deliveries(client, pid, hook["id"])) == 2
    finally:
        receiver.close()


def test_backoff_waits_and_gives_up_after_max_attempts(client, services):
    receiver = Receiver([503])
    try:
        services.settings.webhook_max_attempts = 3
        services.settings.webhook_backoff_seconds = 60.0
        pid = make_project(client, name="give-up")["id"]
        hook = _subscribe(client, pid, receiver.url, ["job.finished"])
        client.post(f"{API}/projects/{pid}/webhooks/{hook['id']}/ping")
        assert [a.status for a in deliver_due(services.sessionmaker, services.settings)] == [
            "pending"]
        (row,) = _deliveries(client, pid, hook["id"])
        assert row["next_attempt_at"] is not None
        assert deliver_due(services.sessionmaker, services.settings) == []  # not due yet
        for expected in ("pending", "failed"):
            _make_due(services)
            assert [a.status for a in deliver_due(services.sessionmaker,
                                                  services.settings)] == [expected]
        _make_due(services)
        assert deliver_due(services.sessionmaker, services.settings) == []
        (row,) = _deliveries(client, pid, hook["id"])
        assert row["status"] == "failed" and row["attempts"] == 3 and len(receiver.requests) == 3
        failed = client.get(f"{API}/projects/{pid}/webhooks/{hook['id']}/deliveries",
                            params={"status": "failed"}).json()
        assert [d["id"] for d in failed] == [row["id"]]
    finally:
        receiver.close()


def test_backoff_doubles_with_jitter_and_caps(settings):
    settings.webhook_backoff_seconds = 10.0
    settings.webhook_backoff_max_seconds = 100.0
    for attempts, cap in ((1, 10.0), (2, 20.0), (3, 40.0), (5, 100.0), (9, 100.0)):
        delays = [backoff_seconds(attempts, settings) for _ in range(200)]
        assert cap / 2 <= min(delays) and max(delays) <= cap
        assert max(delays) - min(delays) > cap / 10  # jittered, not constant


def test_a_claimed_attempt_is_not_sent_twice(client, services, receiver):
    pid = make_project(client, name="claim")["id"]
    hook = _subscribe(client, pid, receiver.url, ["job.finished"])
    client.post(f"{API}/projects/{pid}/webhooks/{hook['id']}/ping")
    with services.sessionmaker() as session, session.begin():  # another process's claim
        session.execute(update(WebhookDelivery).values(status="delivering", claimed_at=now_utc()))
    assert deliver_due(services.sessionmaker, services.settings) == []
    assert receiver.requests == []
    with services.sessionmaker() as session, session.begin():  # that process died long ago
        session.execute(update(WebhookDelivery).values(
            claimed_at=now_utc() - timedelta(hours=1)))
    assert [a.status for a in deliver_due(services.sessionmaker, services.settings)] == [
        "delivered"]
    assert len(receiver.requests) == 1


def test_every_n_labels_fires_at_multiples(client, services, receiver):
    project = make_project(client, name="milestones")
    pid = project["id"]
    _, classes = make_pool(client, project, n=30, labeled=0)
    hook = _subscribe(client, pid, receiver.url, ["labels.milestone"], every_n_labels=3)
    label_items(client, project, classes, 7)
    rows = _deliveries(client, pid, hook["id"])
    assert sorted(r["payload"]["n_labels"] for r in rows) == [3, 6]
    assert {r["event"] for r in rows} == {"labels.milestone"}
    paused = client.patch(f"{API}/projects/{pid}/webhooks/{hook['id']}", json={"active": False})
    assert paused.status_code == 200
    label_items(client, project, classes, 2)  # 9 labels, but the subscription is paused
    assert len(_deliveries(client, pid, hook["id"])) == 2
    deliver_due(services.sessionmaker, services.settings)
    counts = [json.loads(r["body"])["data"]["n_labels"] for r in receiver.requests]
    assert sorted(counts) == [3, 6]


def test_training_fires_checkpoint_activated_and_job_finished(client, services, receiver):
    project = make_project(client, name="train-hooks")
    pid = project["id"]
    make_pool(client, project, n=60, labeled=12)
    hook = _subscribe(client, pid, receiver.url,
                      ["checkpoint.activated", "job.finished", "job.failed"])
    job = client.post(f"{API}/projects/{pid}/train", json={"epochs": 5})
    assert job.status_code == 202
    assert client.get(f"{API}/jobs/{job.json()['id']}").json()["status"] == "succeeded"
    rows = {r["event"]: r for r in _deliveries(client, pid, hook["id"])}
    assert set(rows) == {"checkpoint.activated", "job.finished"}
    with services.sessionmaker() as session:
        checkpoint = session.scalars(select(Checkpoint).where(Checkpoint.project_id == pid)).one()
        assert session.get(Project, pid).active_checkpoint_id == checkpoint.id
        checkpoint_id = checkpoint.id
    assert rows["checkpoint.activated"]["payload"]["checkpoint_id"] == checkpoint_id
    assert rows["checkpoint.activated"]["payload"]["job_id"] == job.json()["id"]
    assert rows["job.finished"]["payload"]["job_id"] == job.json()["id"]
    attempts = deliver_due(services.sessionmaker, services.settings)
    assert sorted(a.status for a in attempts) == ["delivered", "delivered"]
    assert sorted(r["headers"]["X-Quarry-Event"] for r in receiver.requests) == [
        "checkpoint.activated", "job.finished"]


def test_job_failed_fires_from_a_failing_body_and_the_reaper(client, services, session, receiver):
    pid = make_project(client, name="fail-hooks")["id"]
    hook = _subscribe(client, pid, receiver.url, ["job.failed"])
    broken = Job(project_id=pid, kind="import", status=JobStatus.QUEUED, params={}, result={},
                 created_at=now_utc())
    lost = Job(project_id=pid, kind="train", status=JobStatus.RUNNING, params={}, result={},
               created_at=now_utc(), started_at=now_utc() - timedelta(hours=1),
               heartbeat_at=now_utc() - timedelta(hours=1))
    session.add_all([broken, lost])
    session.commit()

    def body(_job: Job, _progress: object) -> None:
        raise ValueError("the file is unreadable")

    run_guarded(services.sessionmaker, broken.id, body)
    assert reap_stale(services.sessionmaker, 60.0) == [lost.id]
    rows = _deliveries(client, pid, hook["id"])
    by_job = {r["payload"]["job_id"]: r["payload"] for r in rows}
    assert set(by_job) == {broken.id, lost.id}
    assert "the file is unreadable" in by_job[broken.id]["error"]
    assert "worker lost" in by_job[lost.id]["error"]
    assert reap_stale(services.sessionmaker, 60.0) == []
    assert len(_deliveries(client, pid, hook["id"])) == 2


def _make_due(services) -> None:
    with services.sessionmaker() as session, session.begin():
        session.execute(update(WebhookDelivery).where(WebhookDelivery.status == "pending")
                        .values(next_attempt_at=now_utc() - timedelta(seconds=1)))
        assert session.scalars(select(WebhookDelivery.id)).all()
