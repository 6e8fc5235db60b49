"""Job bookkeeping: progress with per-epoch metrics and log tail, the reaper, finish/fail
guards (a reaped or cancelled job can never succeed afterwards)."""

from datetime import timedelta

import pytest
from sqlalchemy import update

from app.jobs.common import (
    JobCancelled,
    JobLost,
    Progress,
    claim,
    fail,
    finish,
    parse_epoch_message,
    queued_jobs,
    reap_stale,
    worker_name,
)
from app.models import Job, JobStatus, Project
from app.services.queue import now_utc


@pytest.fixture
def job_id(sessionmaker_) -> int:
    with sessionmaker_() as session, session.begin():
        project = Project(name="jobs", task="multiclass", labels=["a", "b"], modality="vector",
                          embedder="vector")
        session.add(project)
        session.flush()
        job = Job(project_id=project.id, kind="train", status=JobStatus.QUEUED, params={},
                  result={}, created_at=now_utc())
        session.add(job)
        session.flush()
        return job.id


def _job(sessionmaker_, job_id: int) -> Job:
    with sessionmaker_() as session:
        return session.get(Job, job_id)


def test_claim_is_once_and_records_the_worker(sessionmaker_, job_id):
    assert [j for j, _ in queued_jobs(sessionmaker_)] == [job_id]
    first = claim(sessionmaker_, job_id)
    assert first is not None and first.status == JobStatus.RUNNING
    assert claim(sessionmaker_, job_id) is None  # a second worker gets nothing
    assert _job(sessionmaker_, job_id).worker == worker_name()
    assert queued_jobs(sessionmaker_) == []


def test_progress_keeps_epochs_and_log_tail_between_throttled_writes(sessionmaker_, job_id):
    claim(sessionmaker_, job_id)
    progress = Progress(sessionmaker_, job_id, min_interval=3600.0)
    progress(0.1, "supervised: epoch 1/3, loss 1.2500", force=True)
    progress(0.2, "supervised: epoch 2/3, loss 0.7500")  # throttled: buffered, not written
    progress(0.3, "scoring the pool")
    assert len(_job(sessionmaker_, job_id).epoch_metrics) == 1
    progress.flush()
    job = _job(sessionmaker_, job_id)
    assert job.progress == pytest.approx(0.3)
    assert [(e["stage"], e["epoch"], e["n_epochs"], e["loss"]) for e in job.epoch_metrics] == [
        ("supervised", 1, 3, 1.25), ("supervised", 2, 3, 0.75)
    ]
    assert job.log_tail.splitlines()[-1].endswith("scoring the pool")
    assert len(job.log_tail.splitlines()) == 3


def test_parse_epoch_message():
    assert parse_epoch_message("round 2: epoch 10/40, loss 0.0312") == {
        "stage": "round 2", "epoch": 10, "n_epochs": 40, "loss": 0.0312
    }
    assert parse_epoch_message("scoring the pool") is None


def test_progress_raises_on_cancel(sessionmaker_, job_id):
    claim(sessionmaker_, job_id)
    with sessionmaker_() as session, session.begin():
        session.execute(update(Job).where(Job.id == job_id).values(cancel_requested=True))
    with pytest.raises(JobCancelled):
        Progress(sessionmaker_, job_id)(0.5, "x", force=True)


def test_reaper_fails_only_stale_running_jobs(sessionmaker_, job_id):
    claim(sessionmaker_, job_id)
    assert reap_stale(sessionmaker_, stale_seconds=60) == []  # fresh heartbeat
    with sessionmaker_() as session, session.begin():
        session.execute(
            update(Job).where(Job.id == job_id)
            .values(heartbeat_at=now_utc() - timedelta(seconds=120))
        )
    assert reap_stale(sessionmaker_, stale_seconds=60) == [job_id]
    job = _job(sessionmaker_, job_id)
    assert job.status == JobStatus.FAILED and "worker lost" in job.error
    assert reap_stale(sessionmaker_, stale_seconds=60) == []


def test_a_reaped_job_cannot_finish_and_keeps_its_error(sessionmaker_, job_id):
    claim(sessionmaker_, job_id)
    with sessionmaker_() as session, session.begin():
        session.execute(
            update(Job).where(Job.id == job_id)
            .values(heartbeat_at=now_utc() - timedelta(seconds=120))
        )
    reap_stale(sessionmaker_, stale_seconds=1)
    with pytest.raises(JobLost), sessionmaker_() as session, session.begin():
        finish(session, job_id, {"accuracy": 1.0}, "done")
    with pytest.raises(JobLost):
        Progress(sessionmaker_, job_id)(0.9, "late", force=True)
    fail(sessionmaker_, job_id, RuntimeError("late failure"))
    job = _job(sessionmaker_, job_id)
    assert job.status == JobStatus.FAILED and "worker lost" in job.error


def test_finish_refuses_a_cancelled_job(sessionmaker_, job_id):
    claim(sessionmaker_, job_id)
    with sessionmaker_() as session, session.begin():
        session.execute(update(Job).where(Job.id == job_id).values(cancel_requested=True))
    with pytest.raises(JobCancelled), sessionmaker_() as session, session.begin():
        finish(session, job_id, {}, "done")
    assert _job(sessionmaker_, job_id).status == JobStatus.RUNNING


def test_heartbeat_thread_keeps_a_running_job_alive(sessionmaker_, job_id):
    import time

    from app.jobs.common import Heartbeat

    claim(sessionmaker_, job_id)
    old = now_utc() - timedelta(seconds=120)
    with sessionmaker_() as session, session.begin():
        session.execute(update(Job).where(Job.id == job_id).values(heartbeat_at=old))
    with Heartbeat(sessionmaker_, job_id, interval=0.05):
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            time.sleep(0.1)
            beat = _job(sessionmaker_, job_id).heartbeat_at
            if beat.replace(tzinfo=None) > old.replace(tzinfo=None) + timedelta(seconds=60):
                break
    assert reap_stale(sessionmaker_, stale_seconds=60) == []
