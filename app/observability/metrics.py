"""Prometheus metrics (``prometheus_client``) served at ``/metrics``.

- ``quarry_http_request_duration_seconds{method, route, status}``: histogram, observed by
  :class:`RequestMiddleware`; ``route`` is the matched path *template*
  (``/api/v1/projects/{project_id}/next``), ``unmatched`` otherwise, so cardinality is bounded.
- ``quarry_jobs{kind, status}``: queued and running jobs (queue depth), read at scrape time.
- ``quarry_job_duration_seconds{kind, status}``: histogram of finished jobs'
  ``finished_at - started_at``, built at scrape time from the jobs table (cumulative over
  every finished job the table keeps).
- ``quarry_labels_last_hour{project_id}``: human annotations created in the last hour.

The database gauges are cached for ``ttl`` seconds (default 10) so a tight scrape interval
does not load the database. Each app has its own registry (no global state). Under
``quarry serve --workers N`` (``PROMETHEUS_MULTIPROC_DIR`` set) the request histogram is
prometheus_client's multiprocess kind: every worker process writes its samples there and a
scrape of any worker reports the sum over all of them.
"""

import logging
import math
import os
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from datetime import timedelta
from typing import Any

from prometheus_client import CollectorRegistry, Histogram, multiprocess
from prometheus_client.core import GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from app.models import Annotation, Job, JobStatus, LabelSource
from app.observability.db_timing import DbTime, db_time_var
from app.observability.logs import request_id_var
from app.services.clock import as_utc
from app.services.queue import now_utc

access_log = logging.getLogger("quarry.access")

REQUEST_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
JOB_BUCKETS = (1.0, 5.0, 15.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0, 4 * 3600.0)


class DatabaseCollector(Collector):
    """Queue depth, job durations and labels per hour, read from the database at scrape time."""

    def __init__(self, sm: sessionmaker[Session], ttl: float = 10.0) -> None:
        self._sm, self._ttl = sm, ttl
        self._lock = threading.Lock()
        self._cached: tuple[float, list[Metric]] | None = None

    def describe(self) -> list[Metric]:
        """Nothing up front: registering must not query (and cache) the database."""
        return []

    def collect(self) -> Iterator[Metric]:
        with self._lock:
            now = time.monotonic()
            if self._cached is None or now - self._cached[0] > self._ttl:
                self._cached = (now, self._read())
            yield from self._cached[1]

    def _read(self) -> list[Metric]:
        with self._sm() as session:
            depth = session.execute(
                select(Job.kind, Job.status, func.count(Job.id))
                .where(Job.status.in_([JobStatus.QUEUED, JobStatus.RUNNING]))
                .group_by(Job.kind, Job.status)
            ).all()
            finished = session.execute(
                select(Job.kind, Job.status, Job.started_at, Job.finished_at).where(
                    Job.status.in_(list(JobStatus.FINISHED)),
                    Job.started_at.is_not(None), Job.finished_at.is_not(None),
                )
            ).all()
            labels = session.execute(
                select(Annotation.project_id, func.count(Annotation.id))
                .where(Annotation.source == LabelSource.HUMAN,
                       Annotation.created_at >= now_utc() - timedelta(hours=1))
                .group_by(Annotation.project_id)
            ).all()
        jobs = GaugeMetricFamily("quarry_jobs", "Queued and running jobs.",
                                 labels=["kind", "status"])
        for status in (JobStatus.QUEUED, JobStatus.RUNNING):
            if not any(s == status for _k, s, _n in depth):
                jobs.add_metric(["train", status], 0)
        for kind, status, n in depth:
            jobs.add_metric([str(kind), str(status)], int(n))
        per_hour = GaugeMetricFamily("quarry_labels_last_hour",
                                     "Human annotations created in the last hour.",
                                     labels=["project_id"])
        for project_id, n in labels:
            per_hour.add_metric([str(project_id)], int(n))
        return [jobs, _duration_histogram(finished), per_hour]


def _duration_histogram(rows: Iterable[Any]) -> HistogramMetricFamily:
    family = HistogramMetricFamily("quarry_job_duration_seconds",
                                   "Run time of finished jobs (started to finished).",
                                   labels=["kind", "status"])
    groups: dict[tuple[str, str], list[float]] = {}
    for kind, status, started, finished in rows:
        seconds = max(0.0, (as_utc(finished) - as_utc(started)).total_seconds())
        groups.setdefault((str(kind), str(status)), []).append(seconds)
    for (kind, status), values in sorted(groups.items()):
        buckets = [(_bound(b), sum(v <= b for v in values)) for b in JOB_BUCKETS]
        buckets.append(("+Inf", len(values)))
        family.add_metric([kind, status], buckets=buckets, sum_value=sum(values))
    return family


def _bound(value: float) -> str:
    return "+Inf" if math.isinf(value) else repr(float(value))


def make_registry(sm: sessionmaker[Session]) -> tuple[CollectorRegistry, Histogram]:
    """A fresh registry with the request histogram and the database collector."""
    registry = CollectorRegistry(auto_describe=True)
    shared = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    requests = Histogram(
        "quarry_http_request_duration_seconds", "HTTP request latency by route template.",
        labelnames=["method", "route", "status"], buckets=REQUEST_BUCKETS,
        registry=None if shared else registry,
    )
    if shared:  # several worker processes: aggregate their sample files at scrape time
        multiprocess.MultiProcessCollector(registry, path=shared)
    registry.register(DatabaseCollector(sm))
    return registry, requests


class RequestMiddleware:
    """Pure ASGI middleware: ``X-Request-ID`` (kept when the client sends a sane one), the
    latency histogram by route template, and one ``quarry.access`` log line per request
    (``duration_ms``, and ``db_ms``/``db_statements``: the time spent in database calls)."""

    def __init__(self, app: Callable[..., Any], histogram: Histogram) -> None:
        self.app, self.histogram = app, histogram

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = _request_id(scope)
        token = request_id_var.set(request_id)
        db_time = DbTime()
        db_token = db_time_var.set(db_time)
        started = time.perf_counter()
        status = {"code": 500}

        async def send_with_id(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                status["code"] = int(message["status"])
                message.setdefault("headers", [])
                message["headers"] = [*message["headers"],
                                      (b"x-request-id", request_id.encode())]
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            elapsed = time.perf_counter() - started
            route = route_template(scope)
            method = scope.get("method", "")
            self.histogram.labels(method, route, str(status["code"])).observe(elapsed)
            access_log.info(
                "%s %s %s", method, route, status["code"],
                extra={"method": method, "route": route, "status": status["code"],
                       "duration_ms": round(elapsed * 1000, 2),
                       "db_ms": round(db_time.seconds * 1000, 2),
                       "db_statements": db_time.statements},
            )
            db_time_var.reset(db_token)
            request_id_var.reset(token)


def route_template(scope: dict[str, Any]) -> str:
    """The matched route's path template with the static prefix of included routers
    (``/api/v1``) put back from the raw path; ``unmatched`` when no route matched."""
    path = getattr(scope.get("route"), "path", None)
    if not path:
        return "unmatched"
    raw = str(scope.get("path", ""))
    extra = raw.rstrip("/").count("/") - path.rstrip("/").count("/")
    if extra > 0 and not raw.startswith(path):
        path = "/".join(raw.split("/")[: extra + 1]) + path
    return str(path)


def _request_id(scope: dict[str, Any]) -> str:
    for name, value in scope.get("headers", []):
        if name == b"x-request-id":
            text = value.decode("latin-1")
            if 0 < len(text) <= 128 and text.isascii() and text.isprintable():
                return text
    return uuid.uuid4().hex
