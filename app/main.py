"""Application factory: ``create_app(settings)`` wires every service; nothing at import time."""

import logging
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import FastAPI

from app import __version__
from app.api import api_router
from app.api.deps import Services
from app.api.errors import install_error_handlers
from app.api.ui import mount_ui
from app.config import Settings, get_settings
from app.db import make_engine, make_sessionmaker
from app.jobs import common
from app.jobs.bodies import JOB_BODIES
from app.jobs.runner import InlineJobRunner, JobContext, JobRunner, ThreadJobRunner
from app.sampling.index_store import IndexStore
from app.services.embedding import EmbedderCache
from app.services.indexing import on_checkpoint_hook
from app.services.predicting import NetCache
from app.services.queue import RankingCache
from app.storage import ArtifactStore
from app.strategies import default_registry

API_PREFIX = "/api/v1"
log = logging.getLogger(__name__)


def build_services(settings: Settings, sessionmaker=None) -> Services:  # type: ignore[no-untyped-def]
    """Build the service container (tests pass their own sessionmaker)."""
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    if sessionmaker is None:
        sessionmaker = make_sessionmaker(make_engine(settings))
    store = ArtifactStore(Path(settings.data_dir))
    rankings = RankingCache()
    index_store = IndexStore()
    embedders = EmbedderCache(batch_size=settings.embed_batch_size)
    context = JobContext(
        sessionmaker=sessionmaker,
        settings=settings,
        store=store,
        embedders=embedders,
        index_store=index_store,
        on_checkpoint=_after_checkpoint(
            rankings.invalidate,
            on_checkpoint_hook(
                sessionmaker=sessionmaker, store=store, indexes=index_store, settings=settings
            ),
        ),
    )
    runner: JobRunner
    if settings.job_runner == "inline":
        runner = InlineJobRunner(context, JOB_BODIES)
    else:
        runner = ThreadJobRunner(context, JOB_BODIES)
    return Services(
        settings=settings,
        sessionmaker=sessionmaker,
        store=store,
        strategies=default_registry(),
        rankings=rankings,
        embedders=embedders,
        index_store=index_store,
        nets=NetCache(),
        runner=runner,
    )


def create_app(settings: Settings | None = None, services: Services | None = None) -> FastAPI:
    """The FastAPI app: JSON API under /api/v1, the labeling UI at /."""
    settings = settings or get_settings()
    services = services or build_services(settings)

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        if settings.job_runner != "inline":
            for job_id in common.recover(services.sessionmaker):
                kind = _job_kind(services, job_id)
                if kind:
                    services.runner.submit(kind, job_id)
        yield
        services.runner.shutdown()

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
    app.include_router(api_router, prefix=API_PREFIX)
    mount_ui(app)
    return app


def _after_checkpoint(*hooks: Callable[[int], None]) -> Callable[[int], None]:
    """Run every hook for a project whose new checkpoint was just activated."""

    def run(project_id: int) -> None:
        for hook in hooks:
            hook(project_id)

    return run


def _job_kind(services: Services, job_id: int) -> str | None:
    from app.models import Job

    with services.sessionmaker() as session:
        job = session.get(Job, job_id)
        return job.kind if job is not None else None
