"""/projects: create, list, read, update, delete, export."""

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query, Request, Response

from app.api.deps import ProjectDep, ServicesDep, SessionDep
from app.schemas.projects import ProjectCreate, ProjectRead, ProjectUpdate
from app.services import exporting, projects

router = APIRouter(prefix="/projects", tags=["projects"])


@router.post("", status_code=201, response_model=ProjectRead)
def create_project(body: ProjectCreate, session: SessionDep, services: ServicesDep) -> dict[str, Any]:
    """Create a project with its label set, task type and modality."""
    project = projects.create_project(
        session,
        body,
        strategies=services.strategies,
        default_strategy=services.settings.default_queue_strategy,
    )
    return projects.read_project(session, project)


@router.get("", response_model=list[ProjectRead])
def list_projects(session: SessionDep, request: Request) -> list[dict[str, Any]]:
    """Every project with its counts (non-admins: their member projects only)."""
    principal = request.state.principal
    return [
        projects.read_project(session, p) for p in projects.list_projects(session)
        if principal.may_use(p.id)
    ]


@router.get("/{project_id}", response_model=ProjectRead)
def read_project(project: ProjectDep, session: SessionDep) -> dict[str, Any]:
    """A project with counts (items, labeled, pseudo-labeled, by label) and its active model."""
    return projects.read_project(session, project)


@router.patch("/{project_id}", response_model=ProjectRead)
def update_project(
    body: ProjectUpdate, project: ProjectDep, session: SessionDep, services: ServicesDep
) -> dict[str, Any]:
    """Rename, append labels, or change the queue strategy."""
    projects.update_project(session, project, body, strategies=services.strategies)
    services.rankings.invalidate(project.id)
    return projects.read_project(session, project)


@router.delete("/{project_id}", status_code=204)
def delete_project(project: ProjectDep, session: SessionDep, services: ServicesDep) -> Response:
    """Delete a project, its items, labels, models and artifacts."""
    project_id = project.id
    projects.delete_project(
        session, project, after_commit=lambda: services.store.delete_project(project_id)
    )
    return Response(status_code=204)


@router.get(
    "/{project_id}/export",
    responses={200: {"content": {m: {} for m in exporting.FORMATS.values()}}},
    response_class=Response,
)
def export_labels(
    project: ProjectDep,
    session: SessionDep,
    format: Annotated[Literal["jsonl", "csv", "parquet"], Query()] = "jsonl",
    include: Annotated[Literal["human", "pseudo", "all"], Query()] = "human",
) -> Response:
    """Current labels as JSONL, CSV or Parquet; pseudo-labels only when asked for."""
    body = exporting.render(exporting.label_rows(session, project, include), format)
    name = f"project-{project.id}-labels.{format}"
    return Response(
        body,
        media_type=exporting.FORMATS[format],
        headers={"Content-Disposition": f'attachment; filename="{name}"'},
    )
