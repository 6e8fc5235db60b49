"""Webhook subscriptions and their delivery outbox (one row per event per subscription)."""

from datetime import datetime
from typing import Any

from sqlalchemy import DateTime, ForeignKey, Index, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from app.models.base import Base, TimestampMixin


class DeliveryStatus:
    """Values of ``WebhookDelivery.status``."""

    PENDING = "pending"
    DELIVERING = "delivering"  # claimed by one delivery loop; back to pending if it dies
    DELIVERED = "delivered"
    FAILED = "failed"  # gave up after ``webhook_max_attempts``


class WebhookSubscription(TimestampMixin, Base):
    """A project's receiver URL and the events (``WEBHOOK_EVENTS``) it wants."""

    __tablename__ = "webhook_subscriptions"

    id: Mapped[int] = mapped_column(primary_key=True)
    project_id: Mapped[int] = mapped_column(
        ForeignKey("projects.id", ondelete="CASCADE"), index=True
    )
    url: Mapped[str] = mapped_column(String(2000))
    events: Mapped[list[str]] = mapped_column(default=list)
    every_n_labels: Mapped[int | None] = mapped_column(Integer)
    secret: Mapped[str] = mapped_column(String(128))  # HMAC key; shown once, on create
    active: Mapped[bool] = mapped_column(default=True)
    description: Mapped[str | None] = mapped_column(String(500))


class WebhookDelivery(TimestampMixin, Base):
    """One event for one subscription: the outbox row and its delivery log."""

    __tablename__ = "webhook_deliveries"
    __table_args__ = (
        UniqueConstraint("subscription_id", "event_id"),
        Index("ix_webhook_deliveries_due", "status", "next_attempt_at"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    subscription_id: Mapped[int] = mapped_column(
        ForeignKey("webhook_subscriptions.id", ondelete="CASCADE"), index=True
    )
    event: Mapped[str] = mapped_column(String(64))
    event_id: Mapped[str] = mapped_column(String(200))  # stable per event: "job.finished:12"
    payload: Mapped[dict[str, Any]] = mapped_column(default=dict)
    status: Mapped[str] = mapped_column(String(16), default=DeliveryStatus.PENDING)
    attempts: Mapped[int] = mapped_column(default=0)
    next_attempt_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    claimed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    last_status_code: Mapped[int | None] = mapped_column(Integer)
    last_error: Mapped[str | None] = mapped_column(Text)
    delivered_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
