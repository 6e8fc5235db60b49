"""The project's vector index and similarity search."""

from typing import Any

from fastapi import APIRouter

from app.api.deps import ProjectDep, ServicesDep, SessionDep
from app.schemas.indexing import IndexRead, SearchRequest, SearchResponse
from app.services import indexing

router = APIRouter(prefix="/projects/{project_id}", tags=["index"])


@router.get("/index", response_model=IndexRead)
def read_index(project: ProjectDep, services: ServicesDep) -> dict[str, Any]:
    """Kind, size, dimension, build time and measured recall@10 of the project's index."""
    return indexing.describe(
        project,
        store=services.store,
        indexes=services.index_store,
        config=indexing.IndexConfig.from_settings(services.settings),
    )


@router.post("/search", response_model=SearchResponse)
def search(
    body: SearchRequest, project: ProjectDep, session: SessionDep, services: ServicesDep
) -> dict[str, Any]:
    """Nearest items of an item, a text (text projects) or a vector, with similarities."""
    return indexing.search(
        session,
        project,
        body,
        store=services.store,
        indexes=services.index_store,
        embedders=services.embedders,
        config=indexing.IndexConfig.from_settings(services.settings),
    )
