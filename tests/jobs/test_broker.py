"""The Redis (Dramatiq) path end to end, against the real local Redis and real `quarry worker`
subprocesses: jobs run in a worker; a worker killed with SIGKILL mid-training leaves every
label and the active checkpoint as they were and its job failed (the reaper), after which a new
worker trains normally; a cancel from the API stops a training running in another process."""

import os
import signal

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import create_engine, select

from app.main import create_app
from app.models import Annotation, Checkpoint, Item, JobStatus, Project
from tests.factories import API, AUTH, BOOTSTRAP_KEY, make_pool, make_project
from tests.jobs.conftest import wait_for

pytestmark = pytest.mark.slow

LONG_TRAINING = {"epochs": 10_000, "semi_supervised": {"method": "none"}}


def _job(client, job_id):
    response = client.get(f"{API}/jobs/{job_id}")
    assert response.status_code == 200, response.text
    return response.json()


def _finished(client, job_id):
    job = _job(client, job_id)
    return job if job["status"] in JobStatus.FINISHED else None


def _running_with_progress(client, job_id):
    job = _job(client, job_id)
    assert job["status"] in (JobStatus.QUEUED, JobStatus.RUNNING), job
    return job if job["status"] == JobStatus.RUNNING and job["progress"] > 0.02 else None


def _train(client, pid, body):
    response = client.post(f"{API}/projects/{pid}/train", json=body)
    assert response.status_code == 202, response.text
    return response.json()["id"]


def _state(database_url, pid):
    """Every label (annotations and items' current labels) and the active checkpoint."""
    engine = create_engine(database_url)
    with engine.connect() as conn:
        annotations = conn.execute(
            select(Annotation.id, Annotation.item_id, Annotation.labels, Annotation.source)
            .where(Annotation.project_id == pid).order_by(Annotation.id)
        ).all()
        items = conn.execute(
            select(Item.id, Item.status, Item.labels).where(Item.project_id == pid)
            .order_by(Item.id)
        ).all()
        active = conn.scalar(select(Project.active_checkpoint_id).where(Project.id == pid))
        versions = conn.scalars(select(Checkpoint.id).where(Checkpoint.project_id == pid)).all()
    engine.dispose()
    return [tuple(r) for r in annotations], [tuple(r) for r in items], active, sorted(versions)


def _keyed(settings):
    return settings.model_copy(update={"bootstrap_admin_key": BOOTSTRAP_KEY})


def _project(client, n=600, labeled=90):
    project = make_project(client, name="broker")
    make_pool(client, project, n=n, labeled=labeled)
    return project["id"]


def test_killed_worker_loses_no_label_and_keeps_the_active_checkpoint(
    broker_settings, start_worker
):
    # its loop runs the reaper
    with TestClient(create_app(_keyed(broker_settings)), headers=AUTH) as client:
        pid = _project(client)
        worker = start_worker()
        first = _train(client, pid, {"epochs": 20})
        job = wait_for(lambda: _finished(client, first), 180, "the worker to train")
        assert job["status"] == JobStatus.SUCCEEDED, job
        assert job["worker"].endswith(f":{worker.pid}")  # it ran in the worker process
        assert job["epoch_metrics"] and job["log_tail"]
        before = _state(broker_settings.database_url, pid)
        assert before[2] is not None  # an active checkpoint

        doomed = _train(client, pid, LONG_TRAINING)
        wait_for(lambda: _running_with_progress(client, doomed), 120, "training to run")
        os.kill(worker.pid, signal.SIGKILL)
        worker.wait(timeout=30)

        job = wait_for(lambda: _finished(client, doomed), 60, "the reaper")
        assert job["status"] == JobStatus.FAILED and "worker lost" in job["error"]
        assert _state(broker_settings.database_url, pid) == before  # labels, active, versions
        checkpoints = broker_settings.data_dir / "projects" / str(pid) / "checkpoints"
        assert not (checkpoints / f"job{doomed}").exists()

        start_worker()  # a new worker; the failed job does not block the next training
        again = _train(client, pid, {"epochs": 20})
        job = wait_for(lambda: _finished(client, again), 180, "training after the crash")
        assert job["status"] == JobStatus.SUCCEEDED, job
        after = _state(broker_settings.database_url, pid)
        assert after[0][: len(before[0])] == before[0]  # no annotation lost or changed
        assert after[2] != before[2] and len(after[3]) == 2


def test_cancel_reaches_a_training_in_another_process(broker_settings, start_worker):
    with TestClient(create_app(_keyed(broker_settings)), headers=AUTH) as client:
        pid = _project(client, n=400, labeled=60)
        start_worker()
        job_id = _train(client, pid, LONG_TRAINING)
        wait_for(lambda: _running_with_progress(client, job_id), 120, "training to run")
        assert client.post(f"{API}/jobs/{job_id}/cancel").status_code == 200
        job = wait_for(lambda: _finished(client, job_id), 60, "the cancel")
        assert job["status"] == JobStatus.CANCELLED
        assert _state(broker_settings.database_url, pid)[2] is None  # nothing activated
        assert client.post(f"{API}/projects/{pid}/train", json={"epochs": 5}).status_code == 202
