"""Import items into a project's pool (atomically) and read them back."""

import base64
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
from sqlalchemy import String, cast, insert, select
from sqlalchemy.orm import Session

from app.errors import InvalidInput, InvalidRows, NotFound
from app.models import Annotation, Item, ItemStatus, LabelSource, Project
from app.schemas.pools import ItemIn
from app.services.embedding import EmbedderCache
from app.services.parsing import RowErrors
from app.storage import ArtifactStore

ProgressFn = Callable[[int, int], None]
_CHUNK = 500


@dataclass(frozen=True)
class ImportSummary:
    """What an import stored."""

    imported: int
    labeled: int
    pool_size: int


def check_records(session: Session, project: Project, records: Sequence[ItemIn]) -> None:
    """Validate records against the project: payload per modality, labels, unique ids.

    Raises:
        InvalidInput: no records.
        InvalidRows: listing every bad row (1-based), nothing stored.
    """
    if not records:
        raise InvalidInput("the import holds no records", field="items")
    errors = RowErrors()
    dim = project.feature_dim
    seen: dict[str, int] = {}
    allowed = set(project.labels)
    for number, record in enumerate(records, start=1):
        _check_payload(project, record, number, errors, dim)
        if project.modality == "vector" and record.vector is not None and dim is None:
            dim = len(record.vector)
        if record.label is not None:
            labels = [record.label] if isinstance(record.label, str) else record.label
            unknown = [label for label in labels if label not in allowed]
            if unknown:
                errors.add(number, "label", f"unknown label(s) {unknown}; known: {project.labels}")
            elif project.task != "multilabel" and len(labels) != 1:
                errors.add(number, "label", "a single-label project takes exactly one label")
        if record.external_id is not None:
            if record.external_id in seen:
                errors.add(
                    number, "external_id", f"duplicate of row {seen[record.external_id]} in this import"
                )
            seen.setdefault(record.external_id, number)
    for existing in _existing_external_ids(session, project.id, list(seen)):
        errors.add(seen[existing], "external_id", f"{existing!r} already exists in the project")
    errors.raise_if_any()


def _check_payload(
    project: Project, record: ItemIn, number: int, errors: RowErrors, dim: int | None
) -> None:
    wanted = {"text": "text", "image": "image", "vector": "vector"}[project.modality]
    if getattr(record, wanted) is None:
        errors.add(number, wanted, f"a {project.modality} project needs '{wanted}' in every row")
        return
    for other in {"text", "image", "vector"} - {wanted}:
        if other != "text" and getattr(record, other) is not None:
            errors.add(number, other, f"a {project.modality} project takes no '{other}'")
    if wanted == "vector":
        vector = np.asarray(record.vector, dtype=np.float64)
        if vector.size == 0 or not np.isfinite(vector).all():
            errors.add(number, "vector", "vector must be non-empty and finite")
        elif dim is not None and vector.size != dim:
            errors.add(number, "vector", f"dimension {vector.size} != project's {dim}")
    if wanted == "image":
        try:
            base64.b64decode(str(record.image).split(",", 1)[-1], validate=True)
        except ValueError:
            errors.add(number, "image", "image must be base64 (optionally a data: URL)")


def _existing_external_ids(session: Session, project_id: int, ids: list[str]) -> list[str]:
    found: list[str] = []
    for start in range(0, len(ids), _CHUNK):
        chunk = ids[start : start + _CHUNK]
        found += session.scalars(
            select(Item.external_id).where(
                Item.project_id == project_id, Item.external_id.in_(chunk)
            )
        ).all()
    return found


def embed_records(
    project: Project,
    records: Sequence[ItemIn],
    embedders: EmbedderCache,
    on_progress: ProgressFn | None = None,
) -> npt.NDArray[np.float32]:
    """Features of ``records`` from the project's embedder: float32 ``[n, d]``.

    Raises:
        InvalidRows: the embedder rejected a row (e.g. an undecodable image).
    """
    payloads: list[Any]
    if project.modality == "text":
        payloads = [r.text or "" for r in records]
    elif project.modality == "image":
        payloads = [r.image for r in records]
    else:
        payloads = [r.vector for r in records]
    try:
        features = embedders.embed(project.embedder, payloads, on_progress=on_progress)
    except ValueError as exc:
        raise InvalidRows([{"row": None, "field": project.modality, "msg": str(exc)}]) from None
    if project.feature_dim is not None and features.shape[1] != project.feature_dim:
        raise InvalidInput(
            f"features have dimension {features.shape[1]}, the pool has {project.feature_dim}",
            field="vector",
        )
    return features


def insert_records(
    session: Session,
    project: Project,
    records: Sequence[ItemIn],
    features: npt.NDArray[np.float32],
    store: ArtifactStore,
) -> ImportSummary:
    """Store records and their features in one transaction (the caller commits).

    The features file is written before the commit; if the transaction rolls back, the rows
    past ``pool_size`` are ignored and overwritten by the next import.

    Raises:
        InvalidRows: an external id was taken meanwhile.
    """
    # lock the row (FOR UPDATE OF projects: PostgreSQL rejects locking the outer-joined checkpoint)
    session.refresh(project, with_for_update={"of": Project})
    check_records(session, project, records)  # ids may have been taken since validation
    start = project.pool_size
    rows = []
    for offset, record in enumerate(records):
        position = start + offset
        labels = _label_list(record.label)
        rows.append(
            {
                "project_id": project.id,
                "external_id": record.external_id or f"auto-{position}",
                "position": position,
                "text": record.text,
                "payload": {"image": record.image} if record.image is not None else {},
                "meta": record.meta or {},
                "status": ItemStatus.LABELED if labels is not None else ItemStatus.UNLABELED,
                "labels": labels,
                "label_source": LabelSource.IMPORTED if labels is not None else None,
            }
        )
    ids: list[int] = []
    for chunk_start in range(0, len(rows), _CHUNK):
        chunk = rows[chunk_start : chunk_start + _CHUNK]
        ids += session.scalars(insert(Item).returning(Item.id, sort_by_parameter_order=True), chunk).all()
    annotations = [
        {
            "project_id": project.id,
            "item_id": item_id,
            "labels": row["labels"],
            "source": LabelSource.IMPORTED,
            "extra": {},
        }
        for item_id, row in zip(ids, rows, strict=True)
        if row["labels"] is not None
    ]
    if annotations:
        session.execute(insert(Annotation), annotations)
    store.append_features(project.id, start, features)
    project.pool_size = start + len(rows)
    project.feature_dim = int(features.shape[1])
    session.flush()
    return ImportSummary(imported=len(rows), labeled=len(annotations), pool_size=project.pool_size)


def _label_list(label: str | list[str] | None) -> list[str] | None:
    if label is None:
        return None
    return [label] if isinstance(label, str) else list(label)


def list_items(
    session: Session,
    project: Project,
    *,
    status: str | None,
    label: str | None,
    cursor: str | None,
    limit: int,
) -> tuple[list[Item], str | None]:
    """One page of items ordered by id; ``cursor`` is the opaque value from the last page.

    Raises:
        InvalidInput: bad status, label or cursor.
    """
    query = select(Item).where(Item.project_id == project.id).order_by(Item.id).limit(limit + 1)
    if status is not None:
        if status not in ItemStatus.ALL:
            raise InvalidInput(f"status must be one of {ItemStatus.ALL}", field="status")
        query = query.where(Item.status == status)
    if label is not None:
        if label not in project.labels:
            raise InvalidInput(f"unknown label {label!r}", field="label")
        query = query.where(cast(Item.labels, String).like(f"%{json.dumps(label)}%"))
    if cursor:
        try:
            after = int(base64.urlsafe_b64decode(cursor.encode()).decode())
        except ValueError:
            raise InvalidInput("invalid cursor", field="cursor") from None
        query = query.where(Item.id > after)
    items = list(session.scalars(query).all())
    next_cursor = None
    if len(items) > limit:
        items = items[:limit]
        next_cursor = base64.urlsafe_b64encode(str(items[-1].id).encode()).decode()
    return items, next_cursor


def get_item(session: Session, project: Project, item_id: int, *, lock: bool = False) -> Item:
    """An item of this project, or NotFound. ``lock``: read it fresh (even if the session holds
    it) with its row locked until the transaction ends (``SELECT ... FOR UPDATE``)."""
    item = session.get(Item, item_id, with_for_update=lock, populate_existing=lock)
    if item is None or item.project_id != project.id:
        raise NotFound("item", item_id)
    return item


def item_history(session: Session, item: Item) -> Sequence[Annotation]:
    """The item's annotations, oldest first."""
    return session.scalars(
        select(Annotation).where(Annotation.item_id == item.id).order_by(Annotation.id)
    ).all()
