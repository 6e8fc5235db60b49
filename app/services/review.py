"""Review labels after the fact: list each item's current annotation with filters, relabel it
explicitly, and undo a label.

History stays append-only. An **undo** appends a retraction row (``method="undo"``,
``labels=[]``, ``extra={"undoes": <annotation id>}``) and puts the item back to what it was
before: the previous effective human or imported label, else the active checkpoint's
pseudo-label, else unlabeled. Only the item's current label can be undone, so the effective
labels of an item always form a stack: the current one is the newest row that is neither a
retraction nor retracted.

A **relabel** names the annotation it replaces; if the item's label changed since the reviewer
loaded it, the answer is 409 ``conflict`` instead of a silent overwrite.
"""

import base64
import json
import uuid
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import numpy as np
import numpy.typing as npt
from sqlalchemy import (
    ColumnElement,
    Select,
    String,
    and_,
    case,
    cast,
    func,
    or_,
    select,
    type_coerce,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Session

from app.errors import Conflict, InvalidInput, ModelNotReady, NotFound
from app.models import Annotation, Item, ItemStatus, LabelSource, Lease, LeaseStatus, Project
from app.schemas.labels import AnnotationCreate
from app.schemas.review import RelabelCreate
from app.services import labeling
from app.services.pool_view import checkpoint_array
from app.services.queue import now_utc

UNDO = "undo"
"""``Annotation.method`` of a retraction row."""

MAX_LIMIT = 500


def is_effective(project_id: int) -> ColumnElement[bool]:
    """Rows of the project that count as labels: not a retraction and not retracted."""
    retracted = select(Annotation.extra["undoes"].as_integer()).where(
        Annotation.project_id == project_id,
        Annotation.method == UNDO,
        Annotation.extra["undoes"].as_integer().is_not(None),
    )
    return and_(
        Annotation.project_id == project_id,
        or_(Annotation.method.is_(None), Annotation.method != UNDO),
        Annotation.id.not_in(retracted),
    )


def _current_ids(project_id: int) -> tuple[Any, Any]:
    """Subqueries (item_id, annotation_id): newest effective human/imported row per item, and
    newest pseudo-label row per item."""
    labeled = (
        select(Annotation.item_id, func.max(Annotation.id).label("annotation_id"))
        .where(is_effective(project_id), Annotation.source != LabelSource.PSEUDO)
        .group_by(Annotation.item_id)
        .subquery("labeled")
    )
    pseudo = (
        select(Annotation.item_id, func.max(Annotation.id).label("annotation_id"))
        .where(Annotation.project_id == project_id, Annotation.source == LabelSource.PSEUDO)
        .group_by(Annotation.item_id)
        .subquery("pseudo")
    )
    return labeled, pseudo


def _current_rows(project_id: int) -> Select[Item, Annotation]:
    """Every labeled or pseudo-labeled item joined with the annotation that set its label."""
    labeled, pseudo = _current_ids(project_id)
    current = case(
        (Item.status == ItemStatus.LABELED, labeled.c.annotation_id),
        else_=pseudo.c.annotation_id,
    )
    return (
        select(Item, Annotation)
        .outerjoin(labeled, labeled.c.item_id == Item.id)
        .outerjoin(pseudo, pseudo.c.item_id == Item.id)
        .join(Annotation, Annotation.id == current)
        .where(
            Item.project_id == project_id,
            Item.status.in_([ItemStatus.LABELED, ItemStatus.PSEUDO]),
        )
    )


def has_label(session: Session, column: Any, label: str) -> ColumnElement[bool]:
    """``label`` is in the JSON list ``column`` (JSONB containment on PostgreSQL, a match on
    the serialized text elsewhere)."""
    if session.get_bind().dialect.name == "postgresql":
        return type_coerce(column, JSONB).contains([label])
    needle = json.dumps(label).replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return cast(column, String).like(f"%{needle}%", escape="\\")


@dataclass(frozen=True)
class ReviewFilter:
    """Filters of the review list; None means "any"."""

    label: str | None = None
    source: str | None = None
    annotator: str | None = None
    disagreement: bool | None = None


def list_current(
    session: Session,
    project: Project,
    filters: ReviewFilter,
    *,
    cursor: str | None,
    limit: int,
) -> dict[str, Any]:
    """One page of current annotations (newest first) with the model's prediction.

    ``disagreement`` keeps human or imported labels that the active model's prediction
    contradicts (True) or confirms (False); multilabel compares the label set with the labels
    predicted at p >= 0.5.

    Raises:
        InvalidInput: unknown label or source, bad cursor, limit out of range.
        ModelNotReady: a disagreement filter without an active model.
    """
    if not 1 <= limit <= MAX_LIMIT:
        raise InvalidInput(f"limit must be within 1..{MAX_LIMIT}", field="limit")
    query = _filtered(session, project, filters)
    probs = active_probs(project)
    if filters.disagreement is not None:
        if probs is None:
            raise ModelNotReady(
                "the disagreement filter needs a trained model", field="disagreement"
            )
        query = query.where(Annotation.source != LabelSource.PSEUDO)
        keep = _disagreement_ids(session, project, query, probs, filters.disagreement)
        query = query.where(Annotation.id.in_(keep.tolist()))
    total = session.scalar(select(func.count()).select_from(query.subquery())) or 0
    checkpoint = project.active_checkpoint
    after = _decode_cursor(cursor)
    if after is not None:
        query = query.where(Annotation.id < after)
    rows = session.execute(query.order_by(Annotation.id.desc()).limit(limit + 1)).all()
    next_cursor = None
    if len(rows) > limit:
        rows = rows[:limit]
        next_cursor = _encode_cursor(rows[-1][1].id)
    return {
        "rows": [review_row(project, item, annotation, probs) for item, annotation in rows],
        "next_cursor": next_cursor,
        "total": int(total),
        "model_version": checkpoint.version if probs is not None and checkpoint else None,
    }


def _filtered(
    session: Session, project: Project, filters: ReviewFilter
) -> Select[Item, Annotation]:
    query = _current_rows(project.id)
    if filters.label is not None:
        if filters.label not in project.labels:
            raise InvalidInput(f"unknown label {filters.label!r}", field="label")
        query = query.where(has_label(session, Annotation.labels, filters.label))
    if filters.source is not None:
        if filters.source not in LabelSource.ALL:
            raise InvalidInput(f"source must be one of {LabelSource.ALL}", field="source")
        query = query.where(Annotation.source == filters.source)
    if filters.annotator is not None:
        query = query.where(Annotation.annotator == filters.annotator)
    return query


def active_probs(project: Project) -> npt.NDArray[np.float32] | None:
    checkpoint = project.active_checkpoint
    return None if checkpoint is None else checkpoint_array(checkpoint, "probs")


def predicted_sets(
    probs: npt.NDArray[np.floating[Any]], positions: npt.NDArray[np.int64], *, multilabel: bool
) -> npt.NDArray[np.bool_]:
    """Predicted labels as a boolean mask.

    Args:
        probs: ``[n_pool, n_classes]`` probabilities (a memory map is fine).
        positions: ``[m]`` pool positions, all ``< n_pool``.
        multilabel: threshold at 0.5 instead of taking the argmax.

    Returns:
        ``[m, n_classes]`` bool, one row per position.
    """
    rows = np.asarray(probs[np.sort(positions)], dtype=np.float32)  # sorted reads from the map
    rows = rows[np.argsort(np.argsort(positions))]
    if multilabel:
        return rows >= 0.5
    mask = np.zeros(rows.shape, dtype=bool)
    mask[np.arange(rows.shape[0]), rows.argmax(axis=1)] = True
    return mask


def _disagreement_ids(
    session: Session,
    project: Project,
    query: Select[Item, Annotation],
    probs: npt.NDArray[np.float32],
    disagree: bool,
) -> npt.NDArray[np.int64]:
    """Annotation ids of ``query`` whose label the model contradicts (or confirms)."""
    ids_query = query.with_only_columns(Annotation.id, Item.position, Annotation.labels)
    found = session.execute(ids_query.where(Item.position < probs.shape[0])).all()
    if not found:
        return np.zeros(0, dtype=np.int64)
    ids = np.fromiter((r[0] for r in found), dtype=np.int64, count=len(found))
    positions = np.fromiter((r[1] for r in found), dtype=np.int64, count=len(found))
    index = {name: i for i, name in enumerate(project.labels)}
    given = np.zeros((len(found), len(project.labels)), dtype=bool)  # [m, n_classes]
    for row, (_id, _position, labels) in enumerate(found):
        given[row, [index[name] for name in labels or [] if name in index]] = True
    predicted = predicted_sets(probs, positions, multilabel=project.task == "multilabel")
    differs = (given[:, : predicted.shape[1]] != predicted).any(axis=1)
    return ids[differs if disagree else ~differs]


def review_row(
    project: Project,
    item: Item,
    annotation: Annotation,
    probs: npt.NDArray[np.float32] | None,
) -> dict[str, Any]:
    """API view of one current annotation with the model's prediction."""
    prediction = None
    disagrees = None
    if probs is not None and item.position < probs.shape[0]:
        row = np.asarray(probs[item.position], dtype=np.float32)
        best = int(row.argmax())
        prediction = {"label": project.labels[best], "confidence": float(row[best])}
        if project.task == "multilabel":
            predicted = {project.labels[i] for i in np.flatnonzero(row >= 0.5)}
            prediction["labels"] = sorted(predicted, key=project.labels.index)
            disagrees = predicted != set(annotation.labels or [])
        else:
            disagrees = [prediction["label"]] != list(annotation.labels or [])
    return {
        "annotation": annotation,
        "item": item,
        "prediction": prediction,
        "disagrees": disagrees,
    }


def _encode_cursor(annotation_id: int) -> str:
    return base64.urlsafe_b64encode(str(annotation_id).encode()).decode()


def _decode_cursor(cursor: str | None) -> int | None:
    if not cursor:
        return None
    try:
        return int(base64.urlsafe_b64decode(cursor.encode()).decode())
    except ValueError:
        raise InvalidInput("invalid cursor", field="cursor") from None


def current_annotation(session: Session, item: Item) -> Annotation | None:
    """The annotation that set the item's current label, or None (unlabeled)."""
    if item.status == ItemStatus.UNLABELED:
        return None
    query = select(Annotation).where(Annotation.item_id == item.id)
    if item.status == ItemStatus.LABELED:
        query = query.where(
            is_effective(item.project_id), Annotation.source != LabelSource.PSEUDO
        )
    else:
        query = query.where(Annotation.source == LabelSource.PSEUDO)
    return session.scalar(query.order_by(Annotation.id.desc()).limit(1))


def _owned_annotation(session: Session, project: Project, annotation_id: int) -> Annotation:
    annotation = session.get(Annotation, annotation_id)
    if annotation is None or annotation.project_id != project.id:
        raise NotFound("annotation", annotation_id)
    return annotation


def _ensure_current(session: Session, item: Item, annotation: Annotation) -> None:
    current = current_annotation(session, item)
    if current is None or current.id != annotation.id:
        now = (
            f"now {current.labels} ({current.source}, by {current.annotator or 'nobody'})"
            if current is not None
            else "now unlabeled"
        )
        raise Conflict(
            f"annotation {annotation.id} is no longer the current label of item {item.id}: "
            f"{now}; reload and try again",
            field="annotation_id",
            current_annotation_id=current.id if current is not None else None,
        )


def relabel(
    session: Session,
    project: Project,
    annotation_id: int,
    body: RelabelCreate,
    *,
    idempotency_key: str | None,
) -> tuple[Annotation, Item, bool]:
    """Replace the item's current label, named by ``annotation_id``, with a human label.

    Returns (new annotation, item, created); a retry with the same ``Idempotency-Key``
    returns the first annotation with ``created`` false.

    Raises:
        NotFound: no such annotation in the project.
        Conflict: the item's label changed since (the named annotation is not current).
        InvalidInput: unknown labels or a wrong number of labels.
    """
    annotation = _owned_annotation(session, project, annotation_id)
    item = session.get_one(Item, annotation.item_id)
    request = AnnotationCreate(
        item_id=item.id,
        label=body.label,
        labels=body.labels,
        annotator=body.annotator,
        lease_id=None,
        replace=True,
    )
    retried = idempotency_key is not None and session.scalar(
        select(Annotation.id).where(
            Annotation.project_id == project.id, Annotation.idempotency_key == idempotency_key
        )
    )
    if not retried:  # a retry finds its own first relabel current, not the named annotation
        _ensure_current(session, item, annotation)
    created, fresh = labeling.annotate(session, project, request, idempotency_key=idempotency_key)
    return created, item, fresh


def undo(
    session: Session,
    project: Project,
    annotation_id: int,
    *,
    annotator: str | None,
    relet: bool,
    lease_seconds: int,
) -> dict[str, Any]:
    """Retract a human label (append-only) and restore the item's previous state.

    With ``relet`` the item is leased back to ``annotator`` with the acquisition record of the
    lease it was labeled under, so it is labeled again before anyone else is served it.

    Raises:
        NotFound: no such annotation in the project.
        Conflict: not a human label, not the item's current label (changed or undone since),
            or given by another annotator.
    """
    annotation = _owned_annotation(session, project, annotation_id)
    if annotation.source != LabelSource.HUMAN or annotation.method == UNDO:
        raise Conflict("only a human label can be undone", field="annotation_id")
    if (annotation.annotator or None) != (annotator or None):
        raise Conflict(
            f"annotation {annotation.id} was given by {annotation.annotator!r}, not {annotator!r}",
            field="annotator",
        )
    item = session.get_one(Item, annotation.item_id, with_for_update=True)
    _ensure_current(session, item, annotation)
    now = now_utc()
    retraction = Annotation(
        project_id=project.id,
        item_id=item.id,
        labels=[],
        annotator=annotator,
        source=LabelSource.HUMAN,
        method=UNDO,
        created_at=now,
        extra={"undoes": annotation.id},
    )
    session.add(retraction)
    session.flush()
    _restore_item(session, project, item)
    lease = None
    if relet:
        lease = _relet(session, project, item, annotation, annotator, now, lease_seconds)
    session.flush()
    return {"undone": annotation, "annotation": retraction, "item": item, "lease": lease}


def _restore_item(session: Session, project: Project, item: Item) -> None:
    """Set the item's cached label from its effective history."""
    previous = session.scalar(
        select(Annotation)
        .where(
            Annotation.item_id == item.id,
            is_effective(project.id),
            Annotation.source != LabelSource.PSEUDO,
        )
        .order_by(Annotation.id.desc())
        .limit(1)
    )
    pseudo = None
    if previous is None and project.active_checkpoint_id is not None:
        pseudo = session.scalar(
            select(Annotation)
            .where(
                Annotation.item_id == item.id,
                Annotation.source == LabelSource.PSEUDO,
                Annotation.checkpoint_id == project.active_checkpoint_id,
            )
            .order_by(Annotation.id.desc())
            .limit(1)
        )
    source = previous or pseudo
    if source is None:
        item.status, item.labels, item.label_source, item.label_confidence = (
            ItemStatus.UNLABELED, None, None, None,
        )
    else:
        item.status = ItemStatus.LABELED if previous is not None else ItemStatus.PSEUDO
        item.labels = list(source.labels)
        item.label_source = source.source
        item.label_confidence = source.confidence


def _relet(
    session: Session,
    project: Project,
    item: Item,
    annotation: Annotation,
    annotator: str | None,
    now: Any,
    lease_seconds: int,
) -> dict[str, Any] | None:
    """Lease an item whose label was undone back to its annotator (None if it is labeled)."""
    if item.status == ItemStatus.LABELED:
        return None
    served = session.get(Lease, annotation.lease_id) if annotation.lease_id else None
    expires = now + timedelta(seconds=lease_seconds)
    lease = Lease(
        id=uuid.uuid4().hex,
        project_id=project.id,
        item_id=item.id,
        annotator=annotator or "anonymous",
        strategy=served.strategy if served is not None else UNDO,
        score=served.score if served is not None else None,
        rank=served.rank if served is not None else 0,
        checkpoint_id=served.checkpoint_id if served is not None else None,
        seed=served.seed if served is not None else None,
        status=LeaseStatus.ACTIVE,
        created_at=now,
        expires_at=expires,
    )
    session.add(lease)
    item.lease_id, item.leased_by, item.lease_expires_at = lease.id, lease.annotator, expires
    return {"lease_id": lease.id, "expires_at": expires}


def count_disagreements(session: Session, project: Project) -> int | None:
    """Human or imported labels the active model contradicts (None without a model)."""
    probs = active_probs(project)
    if probs is None:
        return None
    query = _filtered(session, project, ReviewFilter()).where(
        Annotation.source != LabelSource.PSEUDO
    )
    return int(_disagreement_ids(session, project, query, probs, True).size)
