"""Training, jobs, model versions and predictions."""

from typing import Annotated, Any

from fastapi import APIRouter, Header, Response

from app.api.deps import ProjectDep, ServicesDep, SessionDep
from app.models import Job
from app.schemas.ids import DbId
from app.schemas.jobs import CheckpointRead, JobRead, PredictRequest, PredictResponse, TrainRequest
from app.services import jobs, predicting, training

router = APIRouter(tags=["models and jobs"])


@router.post("/projects/{project_id}/train", status_code=202, response_model=JobRead)
def train(
    response: Response,
    project: ProjectDep,
    session: SessionDep,
    services: ServicesDep,
    body: TrainRequest | None = None,
    idempotency_key: Annotated[str | None, Header(max_length=200)] = None,
) -> Job:
    """Start a training job (supervised, then pseudo-labels for confident unlabeled items)."""
    job = training.request_training(
        session, project, body or TrainRequest(), runner=services.runner,
        idempotency_key=idempotency_key,
    )
    response.headers["Location"] = f"/api/v1/jobs/{job.id}"
    return job


@router.get("/jobs/{job_id}", response_model=JobRead)
def read_job(job_id: DbId, session: SessionDep) -> Job:
    """A job's status, progress (0..1), metrics and error."""
    return jobs.get_job(session, job_id)


@router.post("/jobs/{job_id}/cancel", response_model=JobRead)
def cancel_job(job_id: DbId, session: SessionDep) -> Job:
    """Cancel a queued job, or stop a running one at its next progress report."""
    return jobs.cancel_job(session, jobs.get_job(session, job_id))


@router.get("/projects/{project_id}/jobs", response_model=list[JobRead])
def list_jobs(project: ProjectDep, session: SessionDep) -> list[Job]:
    """The project's jobs, newest first."""
    return jobs.list_jobs(session, project)


@router.get("/projects/{project_id}/models", response_model=list[CheckpointRead])
def list_models(project: ProjectDep, session: SessionDep) -> list[dict[str, Any]]:
    """Model versions with their metrics, newest first."""
    return training.list_checkpoints(session, project)


@router.post("/projects/{project_id}/models/{version}/activate", response_model=CheckpointRead)
def activate_model(
    version: DbId, project: ProjectDep, session: SessionDep, services: ServicesDep
) -> dict[str, Any]:
    """Make a model version the active one (roll back or forward)."""
    result = training.activate(session, project, version)
    services.rankings.invalidate(project.id)
    return result


@router.post("/projects/{project_id}/predict", response_model=PredictResponse)
def predict(
    body: PredictRequest, project: ProjectDep, session: SessionDep, services: ServicesDep
) -> dict[str, Any]:
    """Labels and probabilities from the active model for items, texts or vectors."""
    return predicting.predict(
        session, project, body, embedders=services.embedders, nets=services.nets,
        store=services.store,
    )
