"""Follow and start jobs from the command line: over HTTP (a running API) or on the database.

``quarry train`` and ``quarry jobs --follow`` read a job the way ``GET /jobs/{id}`` returns it
(``JobRead``) from either source and draw it as a tqdm progress bar until it finishes.
"""

import contextlib
import json
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from typing import Any, TextIO

from tqdm import tqdm

from app.models import JobStatus

JobFetch = Callable[[int], dict[str, Any]]


class ApiError(Exception):
    """An HTTP error from the API, with its problem+json detail."""


class ApiClient:
    """A minimal JSON client for ``/api/v1`` (stdlib only)."""

    def __init__(self, base_url: str, timeout: float = 30.0) -> None:
        self.base = base_url.rstrip("/")
        if not self.base.endswith("/api/v1"):
            self.base += "/api/v1"
        self.timeout = timeout

    def request(
        self, method: str, path: str, body: Any = None, headers: dict[str, str] | None = None
    ) -> Any:
        """Send one request; returns the decoded JSON (or None for 204).

        Raises:
            ApiError: a 4xx/5xx answer (message from its ``detail``) or no connection.
        """
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(self.base + path, data=data, method=method)
        req.add_header("accept", "application/json")
        if data is not None:
            req.add_header("content-type", "application/json")
        for key, value in (headers or {}).items():
            req.add_header(key, value)
        try:
            with urllib.request.urlopen(req, timeout=self.timeout) as resp:
                raw = resp.read()
        except urllib.error.HTTPError as exc:
            detail = exc.read().decode(errors="replace")
            with contextlib.suppress(ValueError, AttributeError):  # not problem+json
                detail = json.loads(detail).get("detail", detail)
            raise ApiError(f"{method} {path}: HTTP {exc.code}: {detail}") from None
        except urllib.error.URLError as exc:
            raise ApiError(f"cannot reach {self.base}: {exc.reason}") from None
        return json.loads(raw) if raw else None

    def job(self, job_id: int) -> dict[str, Any]:
        """``GET /jobs/{id}``."""
        return self.request("GET", f"/jobs/{job_id}")  # type: ignore[no-any-return]


def follow(
    fetch: JobFetch, job_id: int, *, poll: float = 0.5, out: TextIO | None = None,
    timeout: float | None = None,
) -> dict[str, Any]:
    """Draw job ``job_id`` as a progress bar until it finishes; return its last state.

    Raises:
        TimeoutError: ``timeout`` seconds passed first.
    """
    start = time.monotonic()
    job = fetch(job_id)
    with tqdm(total=100, desc=f"job {job_id} {job['kind']}", unit="%", file=out,
              bar_format="{desc}: {percentage:3.0f}%|{bar}| {elapsed} {postfix}") as bar:
        while True:
            bar.n = round(100 * float(job.get("progress") or 0.0), 1)
            bar.set_postfix_str(f"{job['status']}: {job.get('message') or ''}"[:80])
            bar.refresh()
            if job["status"] in JobStatus.FINISHED:
                return job
            if timeout is not None and time.monotonic() - start > timeout:
                raise TimeoutError(f"job {job_id} still {job['status']} after {timeout} s")
            time.sleep(poll)
            job = fetch(job_id)


def summary(job: dict[str, Any]) -> str:
    """One line: status, and accuracy/F1/pseudo-label count or the error."""
    if job["status"] == JobStatus.SUCCEEDED:
        metrics = job.get("metrics") or {}
        keys = ("version", "accuracy", "macro_f1", "n_pseudo", "imported")
        parts = [f"{k}={metrics[k]:.4g}" if isinstance(metrics[k], float) else f"{k}={metrics[k]}"
                 for k in keys if k in metrics]
        return f"job {job['id']} succeeded " + " ".join(parts)
    return f"job {job['id']} {job['status']}: {job.get('error') or job.get('message') or ''}"


def format_jobs(rows: list[dict[str, Any]]) -> str:
    """A plain table of jobs (id, kind, status, progress, message)."""
    lines = [f"{'id':>6}  {'kind':<7} {'status':<10} {'progress':>8}  message"]
    for row in rows:
        lines.append(
            f"{row['id']:>6}  {row['kind']:<7} {row['status']:<10} "
            f"{100 * float(row.get('progress') or 0):7.1f}%  {row.get('message') or ''}"
        )
    return "\n".join(lines)
