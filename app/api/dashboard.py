"""/projects/{id}/dashboard: the dashboard page's JSON twin."""

from typing import Annotated, Any

from fastapi import APIRouter, Query

from app.api.deps import ProjectDep, SessionDep
from app.schemas.dashboard import Dashboard
from app.services import dashboard

router = APIRouter(prefix="/projects/{project_id}", tags=["review"])


@router.get("/dashboard", response_model=Dashboard)
def read_dashboard(
    project: ProjectDep,
    session: SessionDep,
    bucket_seconds: Annotated[int | None, Query(ge=1, le=366 * 86400)] = None,
) -> dict[str, Any]:
    """Labels over time, class balance, learning curve (accuracy vs labels per checkpoint),
    jobs with progress, annotator throughput and agreement on doubly labeled items."""
    return dashboard.dashboard(session, project, bucket_seconds=bucket_seconds)
