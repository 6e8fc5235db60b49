"""With Redis unreachable, POST /train still answers 202 and the job stays queued in the jobs
table (the durable record), to be sent when an API process starts."""

import logging

import pytest
from fastapi.testclient import TestClient

from app.main import build_services, create_app
from app.models import JobStatus
from tests.factories import API, make_pool, make_project


@pytest.fixture
def client(settings, sessionmaker_, admin_key):
    dead = settings.model_copy(update={
        "job_runner": "redis", "broker_url": "redis://127.0.0.1:1/0", "scheduler_enabled": False,
    })
    app = create_app(dead, build_services(dead, sessionmaker=sessionmaker_))
    with TestClient(
        app, raise_server_exceptions=False, headers={"Authorization": f"Bearer {admin_key}"}
    ) as c:
        yield c


def test_train_is_queued_when_the_broker_is_down(client, caplog):
    project = make_project(client, name="nobroker")
    make_pool(client, project, n=30, labeled=9)
    with caplog.at_level(logging.ERROR, logger="app.jobs.broker"):
        response = client.post(f"{API}/projects/{project['id']}/train", json={})
    assert response.status_code == 202
    job = client.get(f"{API}/jobs/{response.json()['id']}").json()
    assert job["status"] == JobStatus.QUEUED
    assert any("stays queued" in r.getMessage() for r in caplog.records)
