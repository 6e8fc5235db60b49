"""GET /jobs/{id} shows progress, per-epoch metrics and the log tail; one training per
project; Idempotency-Key; cancellation."""

from app.models import Job, JobStatus
from app.services.queue import now_utc
from tests.factories import API, make_pool, make_project


def _project(client, name="jobs"):
    project = make_project(client, name=name)
    make_pool(client, project, n=60, labeled=12)
    return project


def test_job_shows_progress_epochs_and_log_tail(client):
    pid = _project(client)["id"]
    response = client.post(f"{API}/projects/{pid}/train", json={"epochs": 12})
    assert response.status_code == 202
    assert response.headers["Location"] == f"/api/v1/jobs/{response.json()['id']}"
    job = client.get(f"{API}/jobs/{response.json()['id']}").json()
    assert job["status"] == JobStatus.SUCCEEDED and job["progress"] == 1.0
    assert job["epoch_metrics"], "per-epoch metrics are recorded"
    first = job["epoch_metrics"][0]
    assert set(first) >= {"stage", "epoch", "n_epochs", "loss", "progress", "t"}
    assert first["loss"] >= 0 and first["epoch"] <= first["n_epochs"]
    assert [e["progress"] for e in job["epoch_metrics"]] == sorted(
        e["progress"] for e in job["epoch_metrics"]
    )
    assert "epoch" in job["log_tail"] and job["log_tail"].count("\n") < 50
    assert job["worker"] and job["heartbeat_at"] and not job["cancel_requested"]
    listed = client.get(f"{API}/projects/{pid}/jobs").json()
    assert [j["id"] for j in listed] == [job["id"]]


def test_one_training_per_project_and_idempotency(client, session):
    pid = _project(client)["id"]
    busy = Job(project_id=pid, kind="train", status=JobStatus.RUNNING, params={}, result={},
               created_at=now_utc(), started_at=now_utc(), heartbeat_at=now_utc())
    session.add(busy)
    session.commit()
    conflict = client.post(f"{API}/projects/{pid}/train", json={})
    assert conflict.status_code == 409 and conflict.json()["context"]["job_id"] == busy.id
    busy.status = JobStatus.FAILED
    session.commit()

    headers = {"Idempotency-Key": "nightly-2026-12-01"}
    first = client.post(f"{API}/projects/{pid}/train", json={"epochs": 5}, headers=headers)
    retry = client.post(f"{API}/projects/{pid}/train", json={"epochs": 5}, headers=headers)
    assert first.status_code == retry.status_code == 202
    assert first.json()["id"] == retry.json()["id"]
    other = client.post(f"{API}/projects/{pid}/train", json={"epochs": 5},
                        headers={"Idempotency-Key": "nightly-2026-12-02"})
    assert other.json()["id"] != first.json()["id"]
    kinds = [j["id"] for j in client.get(f"{API}/projects/{pid}/jobs").json()]
    assert len(kinds) == 3  # the failed one, the keyed one (once) and the next key's


def test_cancel_queued_job_and_finished_job_conflict(client, session):
    pid = _project(client)["id"]
    queued = Job(project_id=pid, kind="train", status=JobStatus.QUEUED, params={}, result={},
                 created_at=now_utc())
    session.add(queued)
    session.commit()
    cancelled = client.post(f"{API}/jobs/{queued.id}/cancel")
    assert cancelled.status_code == 200
    assert cancelled.json()["status"] == JobStatus.CANCELLED
    assert cancelled.json()["cancel_requested"] is True
    again = client.post(f"{API}/jobs/{queued.id}/cancel")
    assert again.status_code == 409
    assert client.get(f"{API}/jobs/424242").status_code == 404


def test_the_database_allows_one_active_training_per_project(client, session, services):
    """Two processes that both passed the service's check still cannot start two trainings."""
    import pytest

    from app.errors import Conflict
    from app.models import Project
    from app.services.jobs import create_job

    pid = _project(client, name="race")["id"]
    project = session.get(Project, pid)
    first, created = create_job(session, project, kind="train", params={}, runner=services.runner)
    assert created
    with pytest.raises(Conflict) as raised:  # as if the check had raced: insert directly
        create_job(session, project, kind="train", params={}, runner=services.runner)
    assert raised.value.context["job_id"] == first.id
    other, created = create_job(session, project, kind="import", params={}, runner=services.runner)
    assert created and other.id != first.id  # other kinds are not limited
    session.info.pop("after_commit", None)  # nothing is submitted
    session.rollback()
