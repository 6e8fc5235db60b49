"""PUT/GET/DELETE /projects/{pid}/schedule and the scheduler tick: label triggers are
debounced (a burst starts one job), cron firings start one job each, a running training
defers a label trigger."""

from datetime import timedelta

from sqlalchemy import func, select, update

from app.jobs.scheduler import tick
from app.models import Annotation, Job, JobStatus, TrainingSchedule
from app.services.queue import now_utc
from tests.factories import API, label_items, make_pool, make_project


def _setup(client, n=90, labeled=6):
    project = make_project(client, name="sched")
    _, classes = make_pool(client, project, n=n, labeled=labeled)
    return project, classes


def _train_jobs(session, pid):
    return session.scalar(
        select(func.count(Job.id)).where(Job.project_id == pid, Job.kind == "train")
    )


def test_schedule_validation_and_crud(client):
    project, _ = _setup(client)
    url = f"{API}/projects/{project['id']}/schedule"
    assert client.get(url).status_code == 404
    missing = client.put(url, json={})
    assert missing.status_code == 422
    assert missing.json()["errors"][0]["loc"] == ["every_n_labels"]
    bad_cron = client.put(url, json={"cron": "every day"})
    assert bad_cron.status_code == 422 and "cron" in bad_cron.json()["errors"][0]["loc"]
    assert client.put(url, json={"every_n_labels": 0}).status_code == 422
    assert client.put(url, json={"every_n_labels": 5, "bogus": 1}).status_code == 422

    put = client.put(url, json={"every_n_labels": 5, "cron": "0  3 * * *",
                                "semi_supervised": {"method": "none"}, "epochs": 20})
    assert put.status_code == 200, put.text
    body = put.json()
    assert body["cron"] == "0 3 * * *" and body["every_n_labels"] == 5
    assert body["train"]["semi_supervised"]["method"] == "none" and body["train"]["epochs"] == 20
    assert body["new_labels"] == 0 and body["next_cron_at"] is not None
    assert client.get(url).json() == body
    assert client.delete(url).status_code == 204
    assert client.get(url).status_code == 404
    assert client.get(f"{API}/projects/999999/schedule").status_code == 404


def test_a_burst_of_labels_starts_one_job(client, services, settings, session):
    project, classes = _setup(client)
    pid = project["id"]
    url = f"{API}/projects/{pid}/schedule"
    client.put(url, json={"every_n_labels": 5, "debounce_seconds": 0, "epochs": 5,
                          "semi_supervised": {"method": "none"}})
    label_items(client, project, classes, 12)  # a burst of 12 labels: 2.4 x N
    assert client.get(url).json()["new_labels"] == 12
    report = tick(services.sessionmaker, settings, services.runner)
    assert len(report.started) == 1
    job = client.get(f"{API}/jobs/{report.started[0]}").json()
    assert job["status"] == JobStatus.SUCCEEDED
    assert job["params"]["semi_supervised"]["method"] == "none"
    assert tick(services.sessionmaker, settings, services.runner).started == []
    state = client.get(url).json()
    assert state["new_labels"] == 0 and state["last_reason"] == "labels"
    assert state["last_job_id"] == report.started[0]
    label_items(client, project, classes, 3)
    assert tick(services.sessionmaker, settings, services.runner).started == []  # 3 < 5
    label_items(client, project, classes, 2)
    assert len(tick(services.sessionmaker, settings, services.runner).started) == 1
    assert _train_jobs(session, pid) == 2


def test_label_trigger_waits_for_quiet_and_for_the_running_training(
    client, services, settings, session
):
    project, classes = _setup(client)
    pid = project["id"]
    client.put(f"{API}/projects/{pid}/schedule",
               json={"every_n_labels": 3, "debounce_seconds": 3600, "epochs": 5})
    label_items(client, project, classes, 4)
    assert tick(services.sessionmaker, settings, services.runner).started == []  # not quiet
    session.execute(
        update(Annotation).where(Annotation.project_id == pid)
        .values(created_at=now_utc() - timedelta(hours=2))
    )
    busy = Job(project_id=pid, kind="train", status=JobStatus.QUEUED, params={}, result={},
               created_at=now_utc())
    session.add(busy)
    session.commit()
    assert tick(services.sessionmaker, settings, services.runner).started == []  # one at a time
    assert session.get(TrainingSchedule, pid).labels_seen == 0  # trigger deferred, not lost
    assert client.post(f"{API}/jobs/{busy.id}/cancel").status_code == 200
    assert len(tick(services.sessionmaker, settings, services.runner).started) == 1


def test_cron_fires_once_per_due_time(client, services, settings, session):
    project, _ = _setup(client)
    pid = project["id"]
    state = client.put(f"{API}/projects/{pid}/schedule",
                       json={"cron": "*/5 * * * *", "epochs": 5}).json()
    assert state["next_cron_at"] is not None
    assert tick(services.sessionmaker, settings, services.runner).started == []  # not due yet
    session.execute(
        update(TrainingSchedule).where(TrainingSchedule.project_id == pid)
        .values(next_cron_at=now_utc() - timedelta(minutes=1))
    )
    session.commit()
    report = tick(services.sessionmaker, settings, services.runner)
    assert len(report.started) == 1
    assert client.get(f"{API}/jobs/{report.started[0]}").json()["params"]["epochs"] == 5
    after = client.get(f"{API}/projects/{pid}/schedule").json()
    assert after["last_reason"] == "cron"
    assert tick(services.sessionmaker, settings, services.runner).started == []
    assert _train_jobs(session, pid) == 1
