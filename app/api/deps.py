"""Dependencies: the request session (commit at the edge) and the app's injected services."""

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Annotated

from fastapi import Depends, Request
from sqlalchemy.orm import Session, sessionmaker

from app.config import Settings
from app.db import transaction
from app.errors import NotFound
from app.jobs.runner import JobRunner
from app.models import Project
from app.sampling.index_store import IndexStore
from app.schemas.ids import DbId
from app.services.auth import LoginThrottle, PrincipalCache
from app.services.embedding import EmbedderCache
from app.services.predicting import NetCache
from app.services.queue import QueueDeps, RankingCache
from app.services.queue_refresh import RankingRefresher
from app.storage import ArtifactStore
from app.strategies.registry import StrategyRegistry


@dataclass
class Services:
    """Everything routers need besides the session; built once in ``create_app``."""

    settings: Settings
    sessionmaker: sessionmaker[Session]
    store: ArtifactStore
    strategies: StrategyRegistry
    rankings: RankingCache
    embedders: EmbedderCache
    index_store: IndexStore
    nets: NetCache
    runner: JobRunner
    queue: QueueDeps
    principals: PrincipalCache = field(default_factory=PrincipalCache)
    logins: LoginThrottle = field(default_factory=LoginThrottle)

    @property
    def refresher(self) -> RankingRefresher | None:
        """The queue's background ranking refresher (None when rankings are computed inline)."""
        return self.queue.refresher


def get_services(request: Request) -> Services:
    """The app's service container."""
    return request.app.state.services  # type: ignore[no-any-return]


ServicesDep = Annotated[Services, Depends(get_services)]


def get_session(services: ServicesDep) -> Iterator[Session]:
    """One transaction per request: commit before the response, then run after-commit hooks."""
    with transaction(services.sessionmaker) as session:
        yield session


SessionDep = Annotated[Session, Depends(get_session, scope="function")]


def get_project_row(session: Session, project_id: int) -> Project:
    """The project or NotFound (no membership check)."""
    project = session.get(Project, project_id)
    if project is None:
        raise NotFound("project", project_id)
    return project


def get_project(project_id: DbId, session: SessionDep, request: Request) -> Project:
    """Load the path's project, or 404 when it does not exist or the caller (set by
    ``app.api.auth.authenticate``) is neither an admin nor a member of it."""
    principal = getattr(request.state, "principal", None)
    if principal is not None and not principal.may_use(project_id):
        raise NotFound("project", project_id)
    return get_project_row(session, project_id)


ProjectDep = Annotated[Project, Depends(get_project, scope="function")]
