"""Browser tests: a real uvicorn server on a free port with a temporary data dir holding the
demo project (scikit-learn's digits, labels hidden) and Debian's Chromium driven by Playwright.

Skipped when Playwright or ``/usr/bin/chromium`` is missing (``apt-get install chromium``;
never ``playwright install``). Screenshots go to ``artifacts/screenshots/``.
"""

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

ADMIN_KEY = "quarry-e2e-bootstrap-admin-key-0001"
CHROMIUM = Path(os.environ.get("QUARRY_CHROMIUM", "/usr/bin/chromium"))
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--no-first-run",
]
REPO = Path(__file__).resolve().parents[2]
SCREENSHOTS = REPO / "artifacts" / "screenshots"
API = "/api/v1"


@pytest.fixture(scope="session", autouse=True)
def _browser_available() -> None:
    """Skip every browser test (before the server starts) without Playwright or Chromium."""
    pytest.importorskip("playwright.sync_api", reason="pip install playwright")
    if not CHROMIUM.exists():
        pytest.skip(f"{CHROMIUM} is missing (apt-get install chromium)")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _prepare_demo(data_dir: Path) -> int:
    """Load the digits demo project the way ``quarry demo`` does; returns its id."""
    from app.config import Settings
    from app.datasets import load_digits_dataset
    from app.demo import ensure_project
    from app.main import build_services
    from app.migrate import upgrade_to_head

    settings = Settings(data_dir=data_dir, job_runner="inline")
    upgrade_to_head(settings.database_url)
    return ensure_project(build_services(settings), load_digits_dataset())


@pytest.fixture(scope="session")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """``{"url", "api", "demo_id"}`` of a uvicorn server on 127.0.0.1 (thread job runner)."""
    data_dir = tmp_path_factory.mktemp("e2e-data")
    demo_id = _prepare_demo(data_dir)
    port = _free_port()
    env = {
        **os.environ,
        "QUARRY_DATA_DIR": str(data_dir),
        "QUARRY_DATABASE_URL": "",
        "QUARRY_JOB_RUNNER": "thread",
        "QUARRY_SCHEDULER_ENABLED": "false",
        "QUARRY_MC_DROPOUT_SAMPLES": "0",
        "QUARRY_BOOTSTRAP_ADMIN_KEY": ADMIN_KEY,
    }
    log = (data_dir / "server.log").open("wb")
    process = subprocess.Popen(
        [sys.executable, "-m", "uvicorn", "app.main:create_app", "--factory",
         "--host", "127.0.0.1", "--port", str(port), "--log-level", "warning"],
        cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 180  # a loaded shared machine
        while True:
            if process.poll() is not None:
                tail = (data_dir / "server.log").read_text()[-2000:]
                raise RuntimeError(f"server exited: {tail}")
            try:
                if httpx.get(f"{url}{API}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError("server did not start within 180 s")
            time.sleep(0.2)
        api = httpx.Client(
            base_url=f"{url}{API}", timeout=60, headers={"Authorization": f"Bearer {ADMIN_KEY}"}
        )
        yield {"url": url, "api": api, "demo_id": demo_id}
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
        log.close()


@pytest.fixture(scope="session")
def trained_demo(server: dict[str, Any]) -> dict[str, Any]:
    """The demo project with a model (one training for the whole session): self-training with
    a low threshold and every new pseudo-label routed for confirmation. Returns the job."""
    from tests.e2e.helpers import ensure_two_classes, train_and_wait

    api, pid = server["api"], server["demo_id"]
    ensure_two_classes(api, pid)
    semi = {"method": "self_training", "threshold": 0.5, "max_per_class": 10}
    body = {"semi_supervised": semi, "confirm_share": 1.0, "activate": "always", "epochs": 10}
    return train_and_wait(api, pid, body=body)


@pytest.fixture(scope="session")
def browser() -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


def login(tab: Any, server: dict[str, Any]) -> None:
    """Log the tab's context in with the admin key (``/login#key=``, as the demo prints)."""
    tab.goto(f"{server['url']}/login#key={ADMIN_KEY}")
    tab.wait_for_url(f"{server['url']}/projects")


@pytest.fixture
def page(browser: Any, server: dict[str, Any]) -> Iterator[Any]:
    """A fresh browser context (own localStorage), logged in as admin, whose page fails the
    test on a JS error or a dialog (an alert() from injected markup)."""
    context = browser.new_context(viewport={"width": 1280, "height": 860})
    tab = context.new_page()
    tab.set_default_timeout(30_000)  # a loaded 2-core CI machine
    login(tab, server)
    problems: list[str] = []
    tab.on("pageerror", lambda err: problems.append(f"page error: {err}"))
    def on_dialog(dialog: Any) -> None:
        problems.append(f"dialog: {dialog.message}")
        dialog.dismiss()

    tab.on("dialog", on_dialog)
    tab.problems = problems
    yield tab
    context.close()
    assert not problems, problems


def screenshot(page: Any, name: str) -> Path:
    """Save a full-page screenshot as ``artifacts/screenshots/<name>.png``."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    return path
