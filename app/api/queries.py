"""Batch-mode queries and the strategy catalogue."""

from typing import Any

from fastapi import APIRouter

from app.api.deps import ProjectDep, ServicesDep, SessionDep
from app.schemas.ids import DbId
from app.schemas.labels import QueryCreate, QueryRead
from app.services import querying

router = APIRouter(tags=["queries"])


@router.post("/projects/{project_id}/queries", status_code=201, response_model=QueryRead)
def create_query(
    body: QueryCreate, project: ProjectDep, session: SessionDep, services: ServicesDep
) -> dict[str, Any]:
    """Select the next batch to label with a query strategy (skips labeled and leased items,
    and items ``/next`` served within ``QUARRY_SERVED_WINDOW_SECONDS``)."""
    batch = querying.create_batch(
        session,
        project,
        body,
        strategies=services.strategies,
        store=services.store,
        served_window_seconds=services.settings.served_window_seconds,
    )
    return querying.read_batch(session, batch)


@router.get("/projects/{project_id}/queries/{query_id}", response_model=QueryRead)
def read_query(query_id: DbId, project: ProjectDep, session: SessionDep) -> dict[str, Any]:
    """A stored batch query."""
    return querying.read_batch(session, querying.get_batch(session, project, query_id))


@router.get("/strategies")
def list_strategies(services: ServicesDep) -> list[dict[str, Any]]:
    """Every query strategy: name, family, source paper, tasks, parameters."""
    return services.strategies.describe()
