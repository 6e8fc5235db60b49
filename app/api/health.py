"""Liveness, readiness (database, artifacts, broker, worker) and the Prometheus scrape."""

from typing import Any

import redis
from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from sqlalchemy import text

from app.api.deps import ServicesDep
from app.jobs.process import ProcessJobRunner
from app.observability.heartbeat import live_workers

router = APIRouter(tags=["operations"])
metrics_router = APIRouter(tags=["operations"])  # mounted at the root: GET /metrics


@router.get("/healthz")
def healthz() -> dict[str, str]:
    """The process is up."""
    return {"status": "ok"}


@router.get("/readyz")
def readyz(services: ServicesDep) -> Any:
    """200 when every check is ``ok``, else 503 with the failing check named.

    Checks: ``database`` (SELECT 1), ``artifacts`` (the store's folder exists), and by job
    runner: redis: ``broker`` (PING) and ``worker`` (at least one ``quarry worker`` heartbeat
    key alive); process: ``worker`` (the job child process is alive or can be started).
    """
    checks: dict[str, str] = {}
    try:
        with services.sessionmaker() as session:
            session.execute(text("SELECT 1"))
        checks["database"] = "ok"
    except Exception as exc:  # noqa: BLE001 - reported, not raised
        checks["database"] = f"error: {type(exc).__name__}"
    root = services.store.root
    checks["artifacts"] = "ok" if root.exists() and root.is_dir() else "missing"
    settings = services.settings
    if settings.job_runner == "redis":
        client = redis.Redis.from_url(settings.broker_url, socket_timeout=2,
                                      socket_connect_timeout=2)
        try:
            client.ping()
            checks["broker"] = "ok"
            workers = live_workers(client, settings)
            checks["worker"] = "ok" if workers else "error: no live quarry worker heartbeat"
        except redis.RedisError as exc:
            checks["broker"] = f"error: {type(exc).__name__}"
            checks["worker"] = "unknown: broker unreachable"
        finally:
            client.close()
    elif isinstance(services.runner, ProcessJobRunner):
        checks["worker"] = "ok" if services.runner.alive() else "error: job child process died"
    ready = all(v == "ok" for v in checks.values())
    return JSONResponse({"status": "ok" if ready else "unavailable", "checks": checks},
                        status_code=200 if ready else 503)


@metrics_router.get("/metrics", include_in_schema=False)
def metrics(request: Request) -> Response:
    """Prometheus text exposition of the app's registry (see app/observability/metrics.py)."""
    registry = request.app.state.metrics_registry
    return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)
