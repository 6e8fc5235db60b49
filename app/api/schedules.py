"""Scheduled retraining of a project."""

from typing import Any

from fastapi import APIRouter, Response

from app.api.deps import ProjectDep, SessionDep
from app.schemas.schedules import ScheduleRead, ScheduleWrite
from app.services import scheduling

router = APIRouter(prefix="/projects/{project_id}/schedule", tags=["models and jobs"])


@router.put("", response_model=ScheduleRead)
def put_schedule(body: ScheduleWrite, project: ProjectDep, session: SessionDep) -> dict[str, Any]:
    """Retrain after every N new human labels and/or on a cron, with these training settings."""
    return scheduling.read_schedule(session, scheduling.put_schedule(session, project, body))


@router.get("", response_model=ScheduleRead, responses={404: {"description": "no schedule"}})
def get_schedule(project: ProjectDep, session: SessionDep) -> dict[str, Any]:
    """The project's schedule and how many human labels arrived since its last run."""
    return scheduling.read_schedule(session, scheduling.get_schedule(session, project))


@router.delete("", status_code=204, responses={404: {"description": "no schedule"}})
def delete_schedule(project: ProjectDep, session: SessionDep) -> Response:
    """Stop scheduled retraining."""
    scheduling.delete_schedule(session, project)
    return Response(status_code=204)
