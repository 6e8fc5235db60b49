"""Application factory: ``create_app(settings)`` wires every service; nothing at import time."""

import gc
import logging
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import replace
from pathlib import Path

from fastapi import FastAPI

from app import __version__
from app.api import api_router
from app.api.deps import Services
from app.api.errors import install_error_handlers
from app.api.health import metrics_router
from app.api.ui import mount_ui
from app.config import Settings, get_settings
from app.db import make_engine, make_sessionmaker
from app.jobs import common
from app.jobs.bodies import JOB_BODIES
from app.jobs.broker import RedisJobRunner
from app.jobs.context import job_context
from app.jobs.process import ProcessJobRunner
from app.jobs.runner import InlineJobRunner, JobContext, JobRunner, ThreadJobRunner
from app.jobs.scheduler import MaintenanceLoop
from app.observability.metrics import RequestMiddleware, make_registry
from app.sampling.index_store import IndexStore
from app.services.auth import PrincipalCache
from app.services.embedding import EmbedderCache
from app.services.predicting import NetCache
from app.services.queue import QueueDeps, RankingCache
from app.services.queue_refresh import RankingRefresher
from app.services.webhooks_delivery import DeliveryLoop
from app.storage import ArtifactStore
from app.strategies import default_registry

API_PREFIX = "/api/v1"
log = logging.getLogger(__name__)
GIL_SWITCH_INTERVAL_S = 0.0005


def build_services(settings: Settings, sessionmaker=None) -> Services:  # type: ignore[no-untyped-def]
    """Build the service container (tests pass their own sessionmaker)."""
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    if sessionmaker is None:
        sessionmaker = make_sessionmaker(make_engine(settings))
    store = ArtifactStore(Path(settings.data_dir))
    rankings = RankingCache()
    index_store = IndexStore()
    embedders = EmbedderCache(batch_size=settings.embed_batch_size)
    context = job_context(
        settings, sessionmaker=sessionmaker, store=store, embedders=embedders,
        index_store=index_store, extra_hooks=(rankings.retire,),
    )
    runner = make_runner(settings, context)
    strategies = default_registry()
    queue_deps = QueueDeps(
        store=store, strategies=strategies, rankings=rankings,
        lease_seconds=settings.lease_seconds, cold_start_strategy=settings.cold_start_strategy,
    )
    if settings.queue_background_refresh:
        queue_deps = replace(queue_deps, refresher=RankingRefresher(sessionmaker, queue_deps))
    return Services(
        settings=settings,
        sessionmaker=sessionmaker,
        store=store,
        strategies=strategies,
        rankings=rankings,
        embedders=embedders,
        index_store=index_store,
        nets=NetCache(),
        runner=runner,
        queue=queue_deps,
        principals=PrincipalCache(settings.auth_cache_seconds),
    )


def create_served_app() -> FastAPI:
    """The app of one ``quarry serve --workers N`` process (uvicorn's factory, in a fresh
    interpreter): logging configured as in the CLI (``QUARRY_LOG_FORMAT``), then
    :func:`create_app` from the environment."""
    from app.observability.logs import configure_logging

    settings = get_settings()
    configure_logging(settings.log_format)
    return create_app(settings)


def create_app(settings: Settings | None = None, services: Services | None = None) -> FastAPI:
    """The FastAPI app: JSON API under /api/v1, the labeling UI at /."""
    settings = settings or get_settings()
    services = services or build_services(settings)
    # a CPU-bound background thread (a queue ranking, a webhook pass) keeps the GIL for up to
    # the switch interval each time a request thread wants it back after I/O: 5 ms by default,
    # paid at every one of a request's ~10 database round trips
    sys.setswitchinterval(GIL_SWITCH_INTERVAL_S)

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        loop: MaintenanceLoop | None = None
        if settings.bootstrap_admin_key:
            ensure_bootstrap_key(services, settings.bootstrap_admin_key)
        deliveries: DeliveryLoop | None = None
        if services.refresher is not None:
            try:
                services.refresher.warm()
            except Exception:  # noqa: BLE001 - a cold cache only costs the first /next
                log.warning("warming the queue rankings failed", exc_info=True)
        if settings.job_runner != "inline":
            # queued jobs whose dispatch was lost (restart, flushed broker): a duplicate
            # message is harmless, the claim is a conditional update
            for job_id, kind in common.queued_jobs(services.sessionmaker):
                if kind in JOB_BODIES:
                    services.runner.submit(kind, job_id)
            if settings.scheduler_enabled:
                loop = MaintenanceLoop(services.sessionmaker, settings, services.runner)
                loop.start()
                deliveries = DeliveryLoop(services.sessionmaker, settings)
                deliveries.start()
        if settings.gc_freeze:
            # the start-up heap (torch, scikit-learn, SQLAlchemy...: ~550k objects) is never
            # garbage; each full collection scanned it, a 0.4 s pause of all requests
            gc.collect()
            gc.freeze()
        yield
        if loop is not None:
            loop.stop()
        if deliveries is not None:
            deliveries.stop()
        services.runner.shutdown()
        if services.refresher is not None:
            services.refresher.shutdown()

    app = FastAPI(
        title="Quarry",
        version=__version__,
        description="Label-efficient learning: active learning, hard negatives, pseudo-labels.",
        openapi_url=f"{API_PREFIX}/openapi.json",
        docs_url=f"{API_PREFIX}/docs",
        redoc_url=None,
        lifespan=lifespan,
    )
    app.state.services = services
    install_error_handlers(app)
    registry, request_histogram = make_registry(services.sessionmaker)
    app.state.metrics_registry = registry
    app.add_middleware(RequestMiddleware, histogram=request_histogram)
    app.include_router(metrics_router)
    app.include_router(api_router, prefix=API_PREFIX)
    mount_ui(app)
    return app


def ensure_bootstrap_key(services: Services, secret: str) -> None:
    """QUARRY_BOOTSTRAP_ADMIN_KEY: make ``secret`` an admin API key (idempotent).

    Raises:
        InvalidInput: the secret is shorter than 24 characters.
    """
    from sqlalchemy.exc import IntegrityError

    from app.db import transaction
    from app.errors import Conflict
    from app.services.auth import ensure_bootstrap_admin

    # `serve --workers N`: the processes start at once and race to insert the user and key;
    # the loser fails on a unique constraint or on the winner's just-committed user, and its
    # retry finds the key
    for attempt in range(2):
        try:
            with transaction(services.sessionmaker) as session:
                ensure_bootstrap_admin(session, secret)
            return
        except (IntegrityError, Conflict):
            if attempt:
                raise


def make_runner(settings: Settings, context: JobContext) -> JobRunner:
    """The job runner ``settings.job_runner`` names (see ``Settings.job_runner``)."""
    if settings.job_runner == "inline":
        return InlineJobRunner(context, JOB_BODIES)
    if settings.job_runner == "thread":
        return ThreadJobRunner(context, JOB_BODIES)
    if settings.job_runner == "redis":
        return RedisJobRunner(settings)
    return ProcessJobRunner(settings)
