"""Hard-negative mining, export, and verification of mined negatives."""

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query, Response

from app.api.deps import ProjectDep, ServicesDep, SessionDep
from app.schemas.fields import SafeStr
from app.schemas.ids import DbId
from app.schemas.mining import (
    MineRequest,
    MineResponse,
    RunsReport,
    VerdictCreate,
    VerdictRead,
    VerifyBatch,
)
from app.services import exporting, mining, verification
from app.services.indexing import IndexConfig

router = APIRouter(prefix="/projects/{project_id}/negatives", tags=["negatives"])


@router.post("/mine", status_code=201, response_model=MineResponse, responses={409: {}})
def mine(
    body: MineRequest, project: ProjectDep, session: SessionDep, services: ServicesDep
) -> dict[str, Any]:
    """Mine hard negatives for anchors; never an item a human labeled with the anchor's label."""
    return mining.mine(
        session,
        project,
        body,
        store=services.store,
        indexes=services.index_store,
        embedders=services.embedders,
        index_config=IndexConfig.from_settings(services.settings),
    )


@router.get(
    "/export",
    response_class=Response,
    responses={200: {"content": {m: {} for m in exporting.FORMATS.values()}}},
)
def export_negatives(
    project: ProjectDep,
    session: SessionDep,
    format: Annotated[Literal["jsonl", "csv", "parquet"], Query()] = "jsonl",
    run_id: DbId | None = None,
    output: Annotated[Literal["triplet", "n-tuple"] | None, Query()] = None,
    verified: bool = False,
) -> Response:
    """Mined negatives (anchor, positive, negative / negative_1..n columns, as
    sentence-transformers reads); ``verified`` keeps only annotator-confirmed negatives."""
    body = mining.export_negatives(
        session, project, fmt=format, run_id=run_id, output=output, verified=verified
    )
    name = f"project-{project.id}-negatives.{format}"
    return Response(
        body,
        media_type=exporting.FORMATS[format],
        headers={"Content-Disposition": f'attachment; filename="{name}"'},
    )


@router.get("/runs", response_model=RunsReport)
def runs(project: ProjectDep, session: SessionDep) -> dict[str, Any]:
    """Mining runs and configurations with the false-negative rate annotators found."""
    return verification.runs_report(session, project)


@router.get("/verify/next", response_model=VerifyBatch, responses={409: {}})
def verify_next(
    project: ProjectDep,
    session: SessionDep,
    services: ServicesDep,
    annotator: Annotated[SafeStr, Query(min_length=1, max_length=200)],
    n: Annotated[int, Query(ge=1, le=100)] = 1,
) -> dict[str, Any]:
    """Queued mined negatives to verify ("is this really not a c?"), each under a lease."""
    items = verification.next_to_verify(
        session, project, annotator=annotator, n=n, lease_seconds=services.settings.lease_seconds
    )
    return {"items": items}


@router.post(
    "/{triplet_id}/verdict", status_code=201, response_model=VerdictRead, responses={409: {}}
)
def verdict(
    triplet_id: DbId, body: VerdictCreate, project: ProjectDep, session: SessionDep
) -> dict[str, Any]:
    """Confirm a mined negative, or mark it a false negative (labels it the anchor's label)."""
    return verification.record_verdict(session, project, triplet_id, body)
