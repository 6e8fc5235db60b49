"""/projects/{id}/items: import (JSON body or file upload), list, read one."""

import json
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request, Response
from starlette.concurrency import run_in_threadpool

from app.api.deps import ProjectDep, ServicesDep, SessionDep
from app.errors import InvalidInput, PayloadTooLarge
from app.schemas.ids import DbId
from app.schemas.pools import ImportAccepted, ItemDetail, ItemPage, ItemRead
from app.services import importing, pools, predicting
from app.services.indexing import IndexConfig
from app.services.parsing import ColumnMap, detect_format, parse_records, validate_records
from app.strategies.uncertainty import entropy_scores, least_confidence_scores, margin_scores

router = APIRouter(prefix="/projects/{project_id}/items", tags=["pool"])

_UPLOAD_DOC = {
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {
                "schema": {"type": "array", "items": {"$ref": "#/components/schemas/ItemIn"}}
            },
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "properties": {
                        "file": {"type": "string", "format": "binary"},
                        "format": {"type": "string", "enum": ["json", "jsonl", "csv", "parquet", "npy"]},
                    },
                    "required": ["file"],
                }
            },
        },
    }
}


async def _read_body(request: Request, limit: int) -> bytes:
    """The request body, read chunk by chunk and refused once it passes ``limit`` bytes.

    A ``Content-Length`` above the limit is refused before anything is read; a chunked or
    lying body is cut off at the first chunk past the limit (at most ``limit`` plus one
    chunk is ever held in memory).

    Raises:
        PayloadTooLarge: 413 ``payload_too_large`` with ``context.limit`` (bytes).
    """
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise PayloadTooLarge(f"upload larger than {limit} bytes", field="body", limit=limit)
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise PayloadTooLarge(f"upload larger than {limit} bytes", field="body", limit=limit)
        chunks.append(chunk)
    return b"".join(chunks)


async def _read_records(request: Request, columns: ColumnMap, limit: int) -> list[Any]:
    data = await _read_body(request, limit)
    ctype = request.headers.get("content-type", "")
    if ctype.startswith("multipart/form-data"):

        async def replay() -> dict[str, Any]:
            return {"type": "http.request", "body": data, "more_body": False}

        form = await Request(request.scope, replay).form(max_part_size=limit)
        upload = form.get("file")
        if upload is None or isinstance(upload, str):
            raise InvalidInput("send the data as a 'file' field", field="file")
        payload = await upload.read()
        fmt = form.get("format")
        fmt = fmt if isinstance(fmt, str) and fmt else detect_format(upload.filename, upload.content_type)
        return await run_in_threadpool(parse_records, payload, fmt, columns)
    if "ndjson" in ctype or "jsonl" in ctype:
        return await run_in_threadpool(parse_records, data, "jsonl", columns)
    if "csv" in ctype:
        return await run_in_threadpool(parse_records, data, "csv", columns)
    try:
        raw = json.loads(data)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise InvalidInput(f"body is not valid JSON: {exc}", field="body") from None
    except RecursionError:
        raise InvalidInput("body JSON nested too deeply", field="body") from None
    if not isinstance(raw, list):
        raise InvalidInput("the body is a JSON array of records", field="body")
    return validate_records(enumerate(raw, start=1))


@router.post(
    "",
    status_code=201,
    response_model=ImportAccepted,
    openapi_extra=_UPLOAD_DOC,
    responses={202: {"model": ImportAccepted, "description": "queued as a job"}},
)
async def import_items(
    request: Request,
    response: Response,
    project: ProjectDep,
    session: SessionDep,
    services: ServicesDep,
    label_column: Annotated[str, Query(max_length=200)] = "label",
    text_column: Annotated[str, Query(max_length=200)] = "text",
    id_column: Annotated[str, Query(max_length=200)] = "external_id",
    ignore_labels: bool = False,
) -> dict[str, Any]:
    """Import items atomically (all rows or none; 422 lists the bad rows).

    Body: a JSON array of records, JSONL/CSV with the matching content type, or a multipart
    ``file`` (JSON, JSONL, CSV, Parquet, NPY). ``ignore_labels`` drops every pre-label.
    Large text/image imports are embedded by a job: 202 with ``job_id``.
    """
    columns = ColumnMap(
        id_column=id_column, text_column=text_column, label_column=label_column,
        ignore_labels=ignore_labels,
    )
    records = await _read_records(request, columns, services.settings.max_upload_bytes)
    if ignore_labels:  # CSV/Parquet already skipped the column; JSON records carry `label`
        records = [record.model_copy(update={"label": None}) for record in records]
    body, queued = await run_in_threadpool(
        importing.import_items,
        session,
        project,
        records,
        store=services.store,
        embedders=services.embedders,
        runner=services.runner,
        inline_max=services.settings.import_inline_max,
        indexes=services.index_store,
        index_config=IndexConfig.from_settings(services.settings),
        near_duplicate_similarity=services.settings.near_duplicate_similarity,
    )
    if queued:
        response.status_code = 202
        response.headers["Location"] = f"/api/v1/jobs/{body['job_id']}"
    return body


@router.get("", response_model=ItemPage)
def list_items(
    project: ProjectDep,
    session: SessionDep,
    status: Annotated[str | None, Query(description="unlabeled, labeled or pseudo")] = None,
    label: str | None = None,
    cursor: str | None = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> dict[str, Any]:
    """Items page by page (``next_cursor`` gives the next page)."""
    items, next_cursor = pools.list_items(
        session, project, status=status, label=label, cursor=cursor, limit=limit
    )
    return {"items": [item_read(i) for i in items], "next_cursor": next_cursor}


@router.get("/{item_id}", response_model=ItemDetail)
def read_item(item_id: DbId, project: ProjectDep, session: SessionDep) -> dict[str, Any]:
    """An item with its annotation history, current prediction and acquisition scores."""
    item = pools.get_item(session, project, item_id)
    prediction, row = predicting.item_prediction(project, item)
    scores = None
    if row is not None and project.task != "multilabel":
        probs = row[None, :]
        scores = {
            "least_confidence": float(least_confidence_scores(probs)[0]),
            "margin": float(margin_scores(probs)[0]),
            "entropy": float(entropy_scores(probs)[0]),
        }
    checkpoint = project.active_checkpoint
    return {
        **item_read(item),
        "annotations": pools.item_history(session, item),
        "prediction": prediction,
        "scores": scores,
        "model_version": checkpoint.version if checkpoint is not None and row is not None else None,
    }


def item_read(item: Any) -> dict[str, Any]:
    """API view of an item (the image comes from the payload)."""
    return {**ItemRead.model_validate(item).model_dump(), "image": item.payload.get("image")}
