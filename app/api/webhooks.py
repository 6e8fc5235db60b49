"""Webhook subscriptions of a project and their delivery log."""

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query, Response

from app.api.deps import ProjectDep, SessionDep
from app.schemas.ids import DbId
from app.schemas.webhooks import (
    DeliveryRead,
    WebhookCreate,
    WebhookCreated,
    WebhookRead,
    WebhookUpdate,
)
from app.services import webhooks

router = APIRouter(prefix="/projects/{project_id}/webhooks", tags=["webhooks"])


@router.post("", status_code=201, response_model=WebhookCreated)
def create_webhook(body: WebhookCreate, project: ProjectDep, session: SessionDep) -> Any:
    """Subscribe a URL to events; the response carries the signing ``secret`` (only here)."""
    return webhooks.create_subscription(session, project, body)


@router.get("", response_model=list[WebhookRead])
def list_webhooks(project: ProjectDep, session: SessionDep) -> Any:
    """The project's subscriptions."""
    return webhooks.list_subscriptions(session, project)


@router.get("/{webhook_id}", response_model=WebhookRead)
def get_webhook(webhook_id: DbId, project: ProjectDep, session: SessionDep) -> Any:
    """One subscription."""
    return webhooks.get_subscription(session, project, webhook_id)


@router.patch("/{webhook_id}", response_model=WebhookRead)
def update_webhook(
    webhook_id: DbId, body: WebhookUpdate, project: ProjectDep, session: SessionDep
) -> Any:
    """Change the URL, events, N, description, or pause it (``active``)."""
    return webhooks.update_subscription(session, project, webhook_id, body)


@router.delete("/{webhook_id}", status_code=204)
def delete_webhook(webhook_id: DbId, project: ProjectDep, session: SessionDep) -> Response:
    """Delete the subscription and its delivery log."""
    webhooks.delete_subscription(session, project, webhook_id)
    return Response(status_code=204)


@router.post("/{webhook_id}/ping", status_code=202, response_model=DeliveryRead)
def ping_webhook(webhook_id: DbId, project: ProjectDep, session: SessionDep) -> Any:
    """Queue a ``ping`` event to the URL (sent by the delivery loop within seconds)."""
    return webhooks.ping(session, webhooks.get_subscription(session, project, webhook_id))


@router.get("/{webhook_id}/deliveries", response_model=list[DeliveryRead])
def list_deliveries(
    webhook_id: DbId,
    project: ProjectDep,
    session: SessionDep,
    status: Literal["pending", "delivering", "delivered", "failed"] | None = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
) -> Any:
    """The delivery log, newest first: status, attempts, last HTTP status and error."""
    subscription = webhooks.get_subscription(session, project, webhook_id)
    return webhooks.list_deliveries(session, subscription, status=status, limit=limit)


@router.post("/{webhook_id}/deliveries/{delivery_id}/redeliver", status_code=202,
             response_model=DeliveryRead)
def redeliver(
    webhook_id: DbId, delivery_id: DbId, project: ProjectDep, session: SessionDep
) -> Any:
    """Send a delivery's event again, as a new delivery (the old one stays in the log)."""
    subscription = webhooks.get_subscription(session, project, webhook_id)
    return webhooks.redeliver(session, webhooks.get_delivery(session, subscription, delivery_id))
