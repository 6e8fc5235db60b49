"""Bodies of ``/projects/{pid}/webhooks`` (subscriptions) and their delivery log."""

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from app.schemas.fields import SafeStr

WebhookEvent = Literal["checkpoint.activated", "job.finished", "job.failed", "labels.milestone"]
WEBHOOK_EVENTS: tuple[str, ...] = WebhookEvent.__args__  # type: ignore[attr-defined]
URL_SCHEMES = ("http://", "https://")


def _check_url(value: str) -> str:
    """http(s) URL with a host, at most 2000 characters."""
    value = value.strip()
    lowered = value.lower()
    if not lowered.startswith(URL_SCHEMES) or len(value.split("://", 1)[1].split("/")[0]) == 0:
        raise ValueError("must be an http:// or https:// URL with a host")
    if any(ch.isspace() for ch in value):
        raise ValueError("must not contain whitespace")
    return value


class WebhookCreate(BaseModel):
    """A new subscription; ``labels.milestone`` needs ``every_n_labels``."""

    model_config = ConfigDict(extra="forbid")

    url: str = Field(max_length=2000, description="receiver, http:// or https://")
    events: list[WebhookEvent] = Field(min_length=1, max_length=len(WEBHOOK_EVENTS))
    every_n_labels: int | None = Field(
        None, ge=1, le=10_000_000, description="labels.milestone fires at every multiple of N"
    )
    active: bool = True
    description: SafeStr | None = Field(None, max_length=500)

    @field_validator("url")
    @classmethod
    def _valid_url(cls, value: str) -> str:
        return _check_url(value)


class WebhookUpdate(BaseModel):
    """A partial update; fields left out keep their values."""

    model_config = ConfigDict(extra="forbid")

    url: str | None = Field(None, max_length=2000)
    events: list[WebhookEvent] | None = Field(None, min_length=1, max_length=len(WEBHOOK_EVENTS))
    every_n_labels: int | None = Field(None, ge=1, le=10_000_000)
    active: bool | None = None
    description: SafeStr | None = Field(None, max_length=500)

    @field_validator("url")
    @classmethod
    def _valid_url(cls, value: str | None) -> str | None:
        return None if value is None else _check_url(value)


class WebhookRead(BaseModel):
    """A subscription (never its secret)."""

    model_config = ConfigDict(from_attributes=True)

    id: int
    project_id: int
    url: str
    events: list[str]
    every_n_labels: int | None
    active: bool
    description: str | None
    created_at: datetime


class WebhookCreated(WebhookRead):
    """The created subscription with its signing secret (shown this once)."""

    secret: str


class DeliveryRead(BaseModel):
    """One event for one subscription and how its delivery went."""

    model_config = ConfigDict(from_attributes=True)

    id: int
    subscription_id: int
    event: str
    event_id: str
    payload: dict[str, Any]
    status: Literal["pending", "delivering", "delivered", "failed"]
    attempts: int
    next_attempt_at: datetime | None
    last_status_code: int | None
    last_error: str | None
    created_at: datetime
    delivered_at: datetime | None
