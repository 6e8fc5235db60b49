"""Annotations and the annotation queue (/next, leases, skip)."""

from typing import Annotated, Any

from fastapi import APIRouter, Header, Path, Query, Response

from app.api.deps import ProjectDep, ServicesDep, SessionDep
from app.api.pools import item_read
from app.models import Checkpoint, Lease
from app.schemas.fields import SafeStr
from app.schemas.labels import AnnotationCreate, LeaseRead, NextResponse
from app.schemas.pools import AnnotationRead
from app.services import labeling, predicting, queue, stats
from app.services.pools import get_item

router = APIRouter(prefix="/projects/{project_id}", tags=["annotation"])


@router.post("/annotations", status_code=201, response_model=AnnotationRead)
def create_annotation(
    body: AnnotationCreate,
    response: Response,
    project: ProjectDep,
    session: SessionDep,
    idempotency_key: Annotated[str | None, Header(max_length=200)] = None,
) -> Any:
    """Label an item (append-only). A different existing human label needs ``replace``:
    otherwise 409. A retry with the same ``Idempotency-Key`` returns the first annotation (200).
    """
    annotation, created = labeling.annotate(
        session, project, body, idempotency_key=idempotency_key
    )
    if not created:
        response.status_code = 200
    return annotation


@router.get("/next", response_model=NextResponse)
def next_items(
    project: ProjectDep,
    session: SessionDep,
    services: ServicesDep,
    annotator: Annotated[SafeStr, Query(min_length=1, max_length=200)] = "anonymous",
    n: Annotated[int, Query(ge=1, le=100)] = 1,
) -> dict[str, Any]:
    """The next item(s) to label, each under a lease no other annotator can hold.

    Items come in the order of the project's queue strategy on the active model (or a
    model-free cold start before the first model); each carries why it was picked.
    """
    leases = queue.lease_next(
        session, project, annotator=annotator, n=n, deps=services.queue
    )
    return {"items": [_next_item(session, project, lease) for lease in leases]}


def _next_item(session: Any, project: Any, lease: Lease) -> dict[str, Any]:
    item = get_item(session, project, lease.item_id)
    prediction, _row = predicting.item_prediction(project, item)
    version = (
        session.get(Checkpoint, lease.checkpoint_id).version
        if lease.checkpoint_id is not None
        else None
    )
    return {
        "lease_id": lease.id,
        "expires_at": lease.expires_at,
        "item": item_read(item),
        "acquisition": {
            "strategy": lease.strategy,
            "score": lease.score,
            "rank": lease.rank,
            "checkpoint_id": lease.checkpoint_id,
            "model_version": version,
            "seed": lease.seed,
        },
        "suggestion": (
            {"label": prediction["label"], "confidence": prediction["confidence"]}
            if prediction
            else None
        ),
    }


@router.post("/leases/{lease_id}/skip", response_model=LeaseRead)
def skip_lease(lease_id: Annotated[SafeStr, Path(max_length=64)], project: ProjectDep, session: SessionDep) -> Lease:
    """Give an item back unlabeled; the same annotator is not served it again."""
    return labeling.skip(session, project, lease_id)


@router.get("/leases", response_model=list[LeaseRead])
def list_leases(
    project: ProjectDep,
    session: SessionDep,
    annotator: str | None = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> list[Lease]:
    """What was served to whom, and why (strategy, score, rank, checkpoint, seed)."""
    return labeling.leases_of(session, project, annotator, limit)


@router.post("/queue/rerank")
def rerank_queue(project: ProjectDep, session: SessionDep, services: ServicesDep) -> dict[str, Any]:
    """Re-rank the annotation queue now from the active checkpoint (it also re-ranks by itself
    after every retrain); the ranking's top score joins the project's stats."""
    ranking = queue.rerank(session, project, deps=services.queue)
    return queue.read_ranking(ranking)


@router.get("/stats")
def project_stats(
    project: ProjectDep,
    session: SessionDep,
    history: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> dict[str, Any]:
    """Stopping signals: prediction agreement between the last two checkpoints and the queue's
    top acquisition score over time."""
    return stats.project_stats(session, project, history=history)
