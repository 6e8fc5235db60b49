"""/projects/{id}/annotations: review current labels, relabel explicitly, undo."""

from typing import Annotated, Any

from fastapi import APIRouter, Header, Query, Response

from app.api.deps import ProjectDep, ServicesDep, SessionDep
from app.api.pools import item_read
from app.schemas.ids import DbId
from app.schemas.review import (
    RelabelCreate,
    ReviewPage,
    ReviewRow,
    ReviewSource,
    UndoCreate,
    UndoRead,
)
from app.services import review

router = APIRouter(prefix="/projects/{project_id}/annotations", tags=["review"])


@router.get("", response_model=ReviewPage, responses={409: {}})
def list_annotations(
    project: ProjectDep,
    session: SessionDep,
    label: Annotated[str | None, Query(max_length=200)] = None,
    source: ReviewSource | None = None,
    annotator: Annotated[str | None, Query(max_length=200)] = None,
    disagreement: Annotated[
        bool | None,
        Query(description="true: the model contradicts the label; false: it agrees"),
    ] = None,
    cursor: str | None = None,
    limit: Annotated[int, Query(ge=1, le=review.MAX_LIMIT)] = 50,
) -> dict[str, Any]:
    """Each labeled item's current annotation, newest first, with the active model's
    prediction; filter by label, source, annotator and disagreement with the model."""
    filters = review.ReviewFilter(
        label=label, source=source, annotator=annotator, disagreement=disagreement
    )
    page = review.list_current(session, project, filters, cursor=cursor, limit=limit)
    page["rows"] = [{**row, "item": item_read(row["item"])} for row in page["rows"]]
    return page


@router.post(
    "/{annotation_id}/relabel", status_code=201, response_model=ReviewRow, responses={409: {}}
)
def relabel(
    annotation_id: DbId,
    body: RelabelCreate,
    response: Response,
    project: ProjectDep,
    session: SessionDep,
    idempotency_key: Annotated[str | None, Header(max_length=200)] = None,
) -> dict[str, Any]:
    """Replace the label set by ``annotation_id`` with a human label. 409 ``conflict`` when
    the item's label changed since (the annotation is no longer current): never a silent
    overwrite."""
    annotation, item, created = review.relabel(
        session, project, annotation_id, body, idempotency_key=idempotency_key
    )
    if not created:
        response.status_code = 200
    row = review.review_row(project, item, annotation, review.active_probs(project))
    return {**row, "item": item_read(item)}


@router.post("/{annotation_id}/undo", status_code=201, response_model=UndoRead, responses={409: {}})
def undo(
    annotation_id: DbId,
    body: UndoCreate,
    project: ProjectDep,
    session: SessionDep,
    services: ServicesDep,
) -> dict[str, Any]:
    """Retract a human label (the item's current one, by the same annotator): appends a
    retraction row, restores the item's previous label or returns it to the queue, and with
    ``relet`` leases it back to the annotator."""
    result = review.undo(
        session,
        project,
        annotation_id,
        annotator=body.annotator,
        relet=body.relet,
        lease_seconds=services.settings.lease_seconds,
    )
    return {**result, "item": item_read(result["item"])}
