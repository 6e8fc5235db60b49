"""Take annotations: append-only history, never a silent overwrite, idempotent retries."""

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from app.errors import Conflict, InvalidInput, LabelConflict, NotFound
from app.models import Annotation, Item, ItemStatus, LabelSource, Lease, LeaseStatus, Project
from app.schemas.labels import AnnotationCreate
from app.services import webhooks
from app.services.pools import get_item
from app.services.queue import close_lease, now_utc


def annotate(
    session: Session, project: Project, body: AnnotationCreate, *, idempotency_key: str | None
) -> tuple[Annotation, bool]:
    """Record a human label for an item; returns (annotation, created).

    The item's current label becomes this one. A retry with the same ``Idempotency-Key``
    returns the first annotation (``created`` false) instead of adding another.

    Raises:
        NotFound: the item is not in this project.
        InvalidInput: unknown label, wrong label count, or a lease of another item.
        LabelConflict: the item has a different human label and ``replace`` is false.
        Conflict: the idempotency key was used for a different request.
    """
    # Read the item with its row locked (PostgreSQL: FOR UPDATE; SQLite's BEGIN IMMEDIATE
    # already serializes writers), fresh even if this session holds it: two concurrent
    # submissions for one item are serialized, so the second sees the first's label (409, not
    # a silent overwrite) and its idempotency key.
    item = get_item(session, project, body.item_id, lock=True)
    if idempotency_key:
        previous = _by_idempotency_key(session, project, idempotency_key)
        if previous is not None:
            if previous.item_id != body.item_id or previous.labels != body.label_list():
                raise Conflict(
                    "this Idempotency-Key was used for a different annotation",
                    field="Idempotency-Key",
                )
            return previous, False
    labels = _validate_labels(project, body.label_list())
    if (
        item.status == ItemStatus.LABELED
        and item.labels != labels
        and not body.replace
    ):
        last = _last_human(session, item)
        raise LabelConflict(
            f"item {item.id} is already labeled {item.labels}; send replace=true to change it",
            field="label",
            current=item.labels,
            annotator=last.annotator if last else None,
        )
    now = now_utc()
    lease: Lease | None = None
    if body.lease_id is not None:
        lease = session.get(Lease, body.lease_id)
        if lease is None or lease.item_id != item.id:
            raise InvalidInput("lease_id does not belong to this item", field="lease_id")
    elif item.lease_id is not None:
        lease = session.get(Lease, item.lease_id)
    annotation = Annotation(
        project_id=project.id,
        item_id=item.id,
        labels=labels,
        annotator=body.annotator,
        source=LabelSource.HUMAN,
        lease_id=body.lease_id,
        idempotency_key=idempotency_key,
        created_at=now,
        extra={},
    )
    try:
        with session.begin_nested():  # a key taken meanwhile by a request for another item
            session.add(annotation)
            session.flush()
    except IntegrityError:
        raise Conflict(
            "this Idempotency-Key was used for a different annotation", field="Idempotency-Key"
        ) from None
    if lease is not None:  # after the insert's flush: one UPDATE of the item below
        close_lease(session, lease.id, LeaseStatus.COMPLETED, now, item=item)
    item.status = ItemStatus.LABELED
    item.labels = labels
    item.label_source = LabelSource.HUMAN
    item.label_confidence = None
    session.flush()
    webhooks.emit_label_milestones(session, project_id=project.id)
    return annotation, True


def skip(session: Session, project: Project, lease_id: str) -> Lease:
    """Give a leased item back; the same annotator is not served it again.

    Raises:
        NotFound: no such lease in this project.
    """
    lease = session.get(Lease, lease_id)
    if lease is None or lease.project_id != project.id:
        raise NotFound("lease", lease_id)
    close_lease(session, lease_id, LeaseStatus.SKIPPED, now_utc())
    session.flush()
    return lease


def _validate_labels(project: Project, labels: list[str]) -> list[str]:
    unknown = [label for label in labels if label not in project.labels]
    if unknown:
        raise InvalidInput(
            f"unknown label(s) {unknown}; the project's labels are {project.labels}",
            field="label",
        )
    if project.task != "multilabel" and len(labels) != 1:
        raise InvalidInput("this project takes exactly one label per item", field="label")
    if len(set(labels)) != len(labels):
        raise InvalidInput("labels repeat", field="labels")
    return labels


def _by_idempotency_key(session: Session, project: Project, key: str) -> Annotation | None:
    return session.scalar(
        select(Annotation).where(
            Annotation.project_id == project.id, Annotation.idempotency_key == key
        )
    )


def _last_human(session: Session, item: Item) -> Annotation | None:
    return session.scalar(
        select(Annotation)
        .where(Annotation.item_id == item.id, Annotation.source != LabelSource.PSEUDO)
        .order_by(Annotation.id.desc())
        .limit(1)
    )


def leases_of(session: Session, project: Project, annotator: str | None, limit: int) -> list[Lease]:
    """Recent leases (the record of why each item was served), newest first."""
    query = select(Lease).where(Lease.project_id == project.id)
    if annotator is not None:
        query = query.where(Lease.annotator == annotator)
    return list(session.scalars(query.order_by(Lease.created_at.desc()).limit(limit)).all())
