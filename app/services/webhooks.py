"""Webhook subscriptions and the transactional outbox of their events.

``emit`` writes one ``WebhookDelivery`` row per interested subscription *in the caller's
transaction* (the checkpoint activation, the job's finish or failure, the label): the event
exists exactly when what caused it was committed. ``app/services/webhooks_delivery.py``
sends the rows. Services never commit.
"""

import json
import secrets
import uuid
from collections.abc import Sequence
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from app.errors import InvalidInput, NotFound
from app.models import (
    Annotation,
    DeliveryStatus,
    LabelSource,
    Project,
    WebhookDelivery,
    WebhookSubscription,
)
from app.schemas.webhooks import WebhookCreate, WebhookUpdate
from app.services.queue import now_utc

LABELS_MILESTONE = "labels.milestone"
PING = "ping"


def create_subscription(
    session: Session, project: Project, body: WebhookCreate
) -> WebhookSubscription:
    """A new subscription with a fresh 32-byte secret (``secrets.token_hex``, 64 hex chars).

    Raises:
        InvalidInput: ``labels.milestone`` without ``every_n_labels`` (field every_n_labels).
    """
    _check_milestone(body.events, body.every_n_labels)
    row = WebhookSubscription(
        project_id=project.id, url=body.url, events=list(dict.fromkeys(body.events)),
        every_n_labels=body.every_n_labels, secret=secrets.token_hex(32), active=body.active,
        description=body.description, created_at=now_utc(),
    )
    session.add(row)
    session.flush()
    return row


def list_subscriptions(session: Session, project: Project) -> list[WebhookSubscription]:
    """The project's subscriptions, oldest first."""
    return list(session.scalars(
        select(WebhookSubscription)
        .where(WebhookSubscription.project_id == project.id)
        .order_by(WebhookSubscription.id)
    ).all())


def get_subscription(session: Session, project: Project, webhook_id: int) -> WebhookSubscription:
    """One subscription of the project.

    Raises:
        NotFound: no such webhook in this project.
    """
    row = session.get(WebhookSubscription, webhook_id)
    if row is None or row.project_id != project.id:
        raise NotFound("webhook", webhook_id)
    return row


def update_subscription(
    session: Session, project: Project, webhook_id: int, body: WebhookUpdate
) -> WebhookSubscription:
    """Apply the fields ``body`` sets.

    Raises:
        NotFound: no such webhook. InvalidInput: the result would subscribe to
        ``labels.milestone`` without ``every_n_labels``.
    """
    row = get_subscription(session, project, webhook_id)
    changes = body.model_dump(exclude_unset=True)
    for name in ("url", "events", "active"):
        if changes.get(name) is None:
            changes.pop(name, None)
    events = list(dict.fromkeys(changes.get("events", row.events)))
    every = changes.get("every_n_labels", row.every_n_labels)
    _check_milestone(events, every)
    for name, value in changes.items():
        setattr(row, name, events if name == "events" else value)
    session.flush()
    return row


def delete_subscription(session: Session, project: Project, webhook_id: int) -> None:
    """Delete the subscription and its delivery log. Raises NotFound."""
    session.delete(get_subscription(session, project, webhook_id))
    session.flush()


def list_deliveries(
    session: Session, subscription: WebhookSubscription, *, status: str | None, limit: int
) -> list[WebhookDelivery]:
    """The subscription's deliveries, newest first."""
    query = select(WebhookDelivery).where(WebhookDelivery.subscription_id == subscription.id)
    if status is not None:
        query = query.where(WebhookDelivery.status == status)
    return list(session.scalars(query.order_by(WebhookDelivery.id.desc()).limit(limit)).all())


def get_delivery(
    session: Session, subscription: WebhookSubscription, delivery_id: int
) -> WebhookDelivery:
    """One delivery of the subscription. Raises NotFound."""
    row = session.get(WebhookDelivery, delivery_id)
    if row is None or row.subscription_id != subscription.id:
        raise NotFound("delivery", delivery_id)
    return row


def redeliver(session: Session, delivery: WebhookDelivery) -> WebhookDelivery:
    """Queue the same event again as a new delivery (the old row stays in the log)."""
    row = WebhookDelivery(
        subscription_id=delivery.subscription_id, event=delivery.event,
        event_id=f"{delivery.event_id[:160]}#redeliver-{uuid.uuid4().hex[:12]}",
        payload=dict(delivery.payload), status=DeliveryStatus.PENDING, attempts=0,
        next_attempt_at=now_utc(), created_at=now_utc(),
    )
    session.add(row)
    session.flush()
    return row


def ping(session: Session, subscription: WebhookSubscription) -> WebhookDelivery:
    """Queue a ``ping`` test event to the subscription (whatever its events)."""
    row = _delivery(subscription, PING, f"ping:{uuid.uuid4().hex}",
                    {"webhook_id": subscription.id, "url": subscription.url})
    session.add(row)
    session.flush()
    return row


def emit(
    session: Session, *, project_id: int, event: str, event_id: str, payload: dict[str, Any]
) -> int:
    """Write ``event`` to the outbox of every active subscription of the project to it.

    ``event_id`` is stable per occurrence (``"job.failed:17"``): a second emit of the same
    occurrence is ignored (unique per subscription). Returns the number of rows written.
    """
    subscriptions = session.scalars(
        select(WebhookSubscription).where(
            WebhookSubscription.project_id == project_id, WebhookSubscription.active.is_(True)
        )
    ).all()
    written = 0
    for subscription in subscriptions:
        if event in subscription.events:
            written += _insert_once(session, _delivery(subscription, event, event_id, payload))
    return written


def emit_checkpoint_activated(session: Session, checkpoint: Any, *, job_id: int | None) -> int:
    """``checkpoint.activated`` for ``checkpoint`` (a flushed ``Checkpoint`` row), in the
    transaction that made it the project's active one; ``job_id`` None for a manual switch."""
    return emit(
        session, project_id=checkpoint.project_id, event="checkpoint.activated",
        event_id=f"checkpoint.activated:{checkpoint.id}:{uuid.uuid4().hex[:12]}"
        if job_id is None else f"checkpoint.activated:{checkpoint.id}",
        payload={"checkpoint_id": checkpoint.id, "version": checkpoint.version,
                 "job_id": job_id, "metrics": _json_safe(checkpoint.metrics)},
    )


def emit_label_milestones(session: Session, *, project_id: int) -> int:
    """After a human annotation: ``labels.milestone`` for subscriptions whose N divides the
    project's human annotation count. Call after the annotation's flush, in its transaction.

    Concurrent labelers are serialized on the subscription rows (``FOR UPDATE``, taken after
    the item's lock, so always in the same order): the count then runs after the previous
    labeler committed and sees its annotation, so no multiple is skipped or counted twice
    (PostgreSQL's read-committed statements see what committed before them; SQLite has one
    writer). Projects without a milestone subscription lock nothing. The unique event id
    (``labels.milestone:<count>``) still guards against a repeat.
    """
    subscriptions = session.scalars(
        select(WebhookSubscription).where(
            WebhookSubscription.project_id == project_id,
            WebhookSubscription.active.is_(True),
            WebhookSubscription.every_n_labels.is_not(None),
        ).with_for_update()
    ).all()
    subscriptions = [s for s in subscriptions if LABELS_MILESTONE in s.events]
    if not subscriptions:
        return 0
    count = int(session.scalar(
        select(func.count(Annotation.id)).where(
            Annotation.project_id == project_id, Annotation.source == LabelSource.HUMAN
        )
    ) or 0)
    written = 0
    for subscription in subscriptions:
        n = int(subscription.every_n_labels or 0)
        if n > 0 and count > 0 and count % n == 0:
            written += _insert_once(session, _delivery(
                subscription, LABELS_MILESTONE, f"{LABELS_MILESTONE}:{count}",
                {"project_id": project_id, "n_labels": count, "every_n_labels": n},
            ))
    return written


def _delivery(
    subscription: WebhookSubscription, event: str, event_id: str, payload: dict[str, Any]
) -> WebhookDelivery:
    now = now_utc()
    return WebhookDelivery(
        subscription_id=subscription.id, event=event, event_id=event_id[:200], payload=payload,
        status=DeliveryStatus.PENDING, attempts=0, next_attempt_at=now, created_at=now,
    )


def _insert_once(session: Session, row: WebhookDelivery) -> int:
    """Insert in a savepoint; 0 when this subscription already has the event id."""
    exists = session.scalar(
        select(WebhookDelivery.id).where(
            WebhookDelivery.subscription_id == row.subscription_id,
            WebhookDelivery.event_id == row.event_id,
        )
    )
    if exists is not None:
        return 0
    try:
        with session.begin_nested():
            session.add(row)
    except IntegrityError:  # a concurrent transaction wrote the same occurrence
        return 0
    return 1


def _json_safe(value: Any) -> Any:
    """``value`` reduced to what JSON columns hold (dict/list/str/number/bool/None)."""
    return json.loads(json.dumps(value, default=str))


def _check_milestone(events: Sequence[str], every_n_labels: int | None) -> None:
    if LABELS_MILESTONE in events and not every_n_labels:
        raise InvalidInput(
            "the labels.milestone event needs every_n_labels", field="every_n_labels"
        )
