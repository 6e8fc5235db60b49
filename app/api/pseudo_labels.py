"""Pseudo-label confirmation: routed pseudo-labels under leases, verdicts, confirmed precision."""

from typing import Annotated, Any

from fastapi import APIRouter, Query

from app.api.deps import ProjectDep, ServicesDep, SessionDep
from app.schemas.fields import SafeStr
from app.schemas.ids import DbId
from app.schemas.pseudo_labels import (
    PrecisionReport,
    PseudoReviewBatch,
    PseudoVerdictCreate,
    PseudoVerdictRead,
)
from app.services import pseudo_review

router = APIRouter(prefix="/projects/{project_id}/pseudo-labels", tags=["pseudo-labels"])


@router.get("/verify/next", response_model=PseudoReviewBatch, responses={409: {}})
def confirm_next(
    project: ProjectDep,
    session: SessionDep,
    services: ServicesDep,
    annotator: Annotated[SafeStr, Query(min_length=1, max_length=200)],
    n: Annotated[int, Query(ge=1, le=100)] = 1,
) -> dict[str, Any]:
    """Pseudo-labels routed for confirmation ("is this a c?"), each under a lease."""
    items = pseudo_review.next_to_confirm(
        session, project, annotator=annotator, n=n, lease_seconds=services.settings.lease_seconds
    )
    return {"items": items}


@router.post(
    "/{review_id}/verdict",
    status_code=201,
    response_model=PseudoVerdictRead,
    responses={409: {}},
)
def verdict(
    review_id: DbId, body: PseudoVerdictCreate, project: ProjectDep, session: SessionDep
) -> dict[str, Any]:
    """Accept a pseudo-label (it becomes a human label) or reject it (optionally correcting it)."""
    return pseudo_review.record_verdict(session, project, review_id, body)


@router.get("/precision", response_model=PrecisionReport)
def precision(project: ProjectDep, session: SessionDep) -> dict[str, Any]:
    """Each checkpoint's confirmed pseudo-label precision (95% Wilson interval)."""
    return pseudo_review.precision_report(session, project)
