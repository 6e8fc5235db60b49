"""Bodies of ``PUT/GET /projects/{pid}/schedule`` (scheduled retraining)."""

from datetime import datetime
from typing import Any

from croniter import croniter
from pydantic import BaseModel, ConfigDict, Field, field_validator

from app.schemas.fields import SafeStr
from app.schemas.jobs import TrainRequest


class ScheduleWrite(TrainRequest):
    """A retraining schedule plus the training settings each run uses.

    The training fields (``semi_supervised``, ``epochs``, ``hidden``, ``seed``, ...) are those
    of ``POST /projects/{pid}/train``.
    """

    model_config = ConfigDict(extra="forbid")

    every_n_labels: int | None = Field(
        None, ge=1, le=10_000_000, description="retrain after this many new human labels"
    )
    cron: SafeStr | None = Field(
        None, max_length=200, description="5-field cron expression, UTC (e.g. '0 3 * * *')"
    )
    debounce_seconds: float = Field(
        10.0, ge=0.0, le=86_400.0,
        description="wait until no human label arrived for this long (a burst starts one job)",
    )
    enabled: bool = True

    @field_validator("cron")
    @classmethod
    def _valid_cron(cls, value: str | None) -> str | None:
        if value is None:
            return None
        value = " ".join(value.split())
        if len(value.split(" ")) != 5 or not croniter.is_valid(value):
            raise ValueError("not a 5-field cron expression (minute hour day month weekday)")
        return value

    def train_body(self) -> dict[str, Any]:
        """The ``TrainRequest`` part, as stored and as each run's job params."""
        fields = set(TrainRequest.model_fields)
        return self.model_dump(mode="json", include=fields)


class ScheduleRead(BaseModel):
    """A project's schedule and where its triggers stand."""

    project_id: int
    enabled: bool
    every_n_labels: int | None
    cron: str | None
    debounce_seconds: float
    train: dict[str, Any]
    labels_seen: int = Field(description="human labels counted at the last triggered run")
    new_labels: int = Field(description="human labels since then")
    next_cron_at: datetime | None
    last_triggered_at: datetime | None
    last_job_id: int | None
    last_reason: str | None
    created_at: datetime
    updated_at: datetime | None
