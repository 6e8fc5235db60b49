"""``quarry serve --workers 2``: two API processes on one port, one bootstrap key, and a
``/metrics`` scrape that sums the request samples of both processes."""

import os
import re
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

from tests.factories import AUTH, BOOTSTRAP_KEY

REPO = Path(__file__).resolve().parents[2]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_two_workers_share_the_port_and_the_metrics(tmp_path: Path) -> None:
    port = _free_port()
    env = {
        **os.environ,
        "QUARRY_DATABASE_URL": f"sqlite+pysqlite:///{tmp_path / 'q.db'}",
        "QUARRY_DATA_DIR": str(tmp_path / "data"),
        "QUARRY_BOOTSTRAP_ADMIN_KEY": BOOTSTRAP_KEY,
        "QUARRY_JOB_RUNNER": "thread",
        "QUARRY_SCHEDULER_ENABLED": "false",
    }
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    server = subprocess.Popen(
        [sys.executable, "-m", "app.cli", "serve", "--port", str(port), "--workers", "2"],
        cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 90
        while True:
            try:
                if httpx.get(f"{base}/api/v1/healthz", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert server.poll() is None, server.stderr.read().decode()[-2000:]  # type: ignore[union-attr]
            assert time.monotonic() < deadline, "the workers did not start"
            time.sleep(0.3)
        statuses = []
        for _ in range(30):  # a new connection each: the kernel spreads them over both
            statuses.append(httpx.get(f"{base}/api/v1/me", headers=AUTH, timeout=10).status_code)
        assert statuses == [200] * 30
        text = httpx.get(f"{base}/metrics", timeout=10).text
        counts = re.findall(
            r'quarry_http_request_duration_seconds_count\{[^}]*route="/api/v1/me"[^}]*'
            r'status="200"[^}]*\} ([0-9.e+]+)', text,
        ) or re.findall(
            r'quarry_http_request_duration_seconds_count\{[^}]*status="200"[^}]*'
            r'route="/api/v1/me"[^}]*\} ([0-9.e+]+)', text,
        )
        assert counts and sum(float(c) for c in counts) == 30.0, text[:3000]
    finally:
        server.terminate()
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            server.kill()
