"""``create_served_app``: the app of a ``quarry serve --workers N`` process logs as the CLI does."""

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = """
import logging
from fastapi.testclient import TestClient
from app.main import create_served_app

with TestClient(create_served_app()) as client:
    client.get("/api/v1/healthz")
"""


def test_a_worker_process_app_writes_json_access_lines(tmp_path):
    env = {
        "PATH": "/usr/bin:/bin",
        "QUARRY_DATA_DIR": str(tmp_path),
        "QUARRY_DATABASE_URL": f"sqlite+pysqlite:///{tmp_path / 'q.db'}",
        "QUARRY_JOB_RUNNER": "inline",
        "QUARRY_LOG_FORMAT": "json",
    }
    subprocess.run(
        [sys.executable, "-m", "app.cli", "db", "upgrade"], cwd=ROOT, env=env, check=True,
        capture_output=True,
    )
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT], cwd=ROOT, env=env, capture_output=True, text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    lines = [json.loads(line) for line in done.stderr.splitlines() if line.startswith("{")]
    access = [line for line in lines if line.get("logger") == "quarry.access"]
    assert access and access[0]["route"] == "/api/v1/healthz" and access[0]["status"] == 200
