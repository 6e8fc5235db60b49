"""The embedded default runner: jobs run in a spawned child process of the API; a child killed
mid-training leaves the job failed (reaper) and the active checkpoint as it was, and the next
job gets a fresh child."""

import os
import signal
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from app.config import Settings
from app.main import create_app
from app.migrate import upgrade_to_head
from app.models import JobStatus
from tests.factories import API, AUTH, BOOTSTRAP_KEY, make_pool, make_project
from tests.jobs.conftest import wait_for

pytestmark = pytest.mark.slow


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    url = f"sqlite+pysqlite:///{tmp_path / 'proc.db'}"
    upgrade_to_head(url)
    return Settings(data_dir=tmp_path / "data", database_url=url, job_runner="inline",
                    job_heartbeat_seconds=0.5, job_stale_seconds=3.0, mc_dropout_samples=0,
                    torch_threads=1)


def test_default_runner_trains_in_a_child_and_survives_a_killed_child(settings):
    assert Settings.model_fields["job_runner"].default == "process"  # the embedded default
    app_settings = settings.model_copy(update={"job_runner": "process",
                                               "scheduler_poll_seconds": 0.5,
                                               "bootstrap_admin_key": BOOTSTRAP_KEY})
    with TestClient(create_app(app_settings), headers=AUTH) as client:  # its loop runs the reaper
        project = make_project(client, name="default-runner")
        make_pool(client, project, n=300, labeled=45)
        pid = project["id"]

        def train(body):
            response = client.post(f"{API}/projects/{pid}/train", json=body)
            assert response.status_code == 202, response.text
            return response.json()["id"]

        def finished(job_id):
            job = client.get(f"{API}/jobs/{job_id}").json()
            return job if job["status"] in JobStatus.FINISHED else None

        first_id = train({"epochs": 10})
        first = wait_for(lambda: finished(first_id), 180, "the child to train")
        assert first["status"] == JobStatus.SUCCEEDED, first
        child = int(first["worker"].rsplit(":", 1)[1])
        assert child != os.getpid()  # it ran in another process
        active = client.get(f"{API}/projects/{pid}").json()["active_model"]["checkpoint_id"]

        doomed = train({"epochs": 10_000, "semi_supervised": {"method": "none"}})
        wait_for(lambda: client.get(f"{API}/jobs/{doomed}").json()["progress"] > 0.02, 120,
                 "the long training")
        os.kill(child, signal.SIGKILL)
        job = wait_for(lambda: finished(doomed), 60, "the reaper")
        assert job["status"] == JobStatus.FAILED and "worker lost" in job["error"]
        assert client.get(f"{API}/projects/{pid}").json()["active_model"]["checkpoint_id"] \
            == active

        again_id = train({"epochs": 10})
        again = wait_for(lambda: finished(again_id), 180, "a fresh child")
        assert again["status"] == JobStatus.SUCCEEDED, again
        assert int(again["worker"].rsplit(":", 1)[1]) != child  # a fresh child took over
