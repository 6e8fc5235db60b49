"""`quarry train` (directly on the database) and `quarry jobs`, and the progress-bar loop."""

import io
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from app import cli
from app.config import Settings, get_settings
from app.jobs.client import follow, summary
from app.main import create_app
from app.migrate import upgrade_to_head
from tests.factories import AUTH, BOOTSTRAP_KEY, make_pool, make_project


@pytest.fixture
def committed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Settings:
    url = f"sqlite+pysqlite:///{tmp_path / 'cli.db'}"
    upgrade_to_head(url)
    monkeypatch.setenv("QUARRY_DATABASE_URL", url)
    monkeypatch.setenv("QUARRY_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("QUARRY_JOB_RUNNER", "process")
    monkeypatch.setenv("QUARRY_MC_DROPOUT_SAMPLES", "0")
    get_settings.cache_clear()
    yield get_settings()
    get_settings.cache_clear()


def test_train_directly_then_list_and_follow(committed, capsys):
    inline = committed.model_copy(
        update={"job_runner": "inline", "bootstrap_admin_key": BOOTSTRAP_KEY}
    )
    with TestClient(create_app(inline), headers=AUTH) as client:
        project = make_project(client, name="cli")
        make_pool(client, project, n=60, labeled=15)
    pid = str(project["id"])
    assert cli.main(["train", pid, "--epochs", "5", "--semi-supervised", "none"]) == 0
    out = capsys.readouterr().out
    assert "training job 1 (thread runner)" in out and "job 1 succeeded" in out
    assert cli.main(["jobs", "--project", pid]) == 0
    listing = capsys.readouterr().out.splitlines()
    assert listing[0].split()[:3] == ["id", "kind", "status"]
    assert listing[1].split()[:4] == ["1", "train", "succeeded", "100.0%"]
    assert cli.main(["jobs", "--follow", "1"]) == 0
    assert cli.main(["train", "424242"]) == 2  # unknown project
    assert cli.main(["train", pid, "--body", '{"epochs": 0}']) != 0  # invalid body


def test_follow_draws_until_finished_and_summarizes():
    states = iter([
        {"id": 3, "kind": "train", "status": "queued", "progress": 0.0, "message": None},
        {"id": 3, "kind": "train", "status": "running", "progress": 0.4, "message": "epoch 4/10"},
        {"id": 3, "kind": "train", "status": "succeeded", "progress": 1.0, "message": "v2",
         "metrics": {"version": 2, "accuracy": 0.91234, "n_pseudo": 7}},
    ])
    bar = io.StringIO()
    job = follow(lambda _id: next(states), 3, poll=0.0, out=bar)
    assert job["status"] == "succeeded"
    assert "100%" in bar.getvalue()
    assert summary(job) == "job 3 succeeded version=2 accuracy=0.9123 n_pseudo=7"
    failed = {"id": 4, "status": "failed", "error": "worker lost: no heartbeat for 60 s"}
    assert summary(failed) == "job 4 failed: worker lost: no heartbeat for 60 s"
