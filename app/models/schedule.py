"""Scheduled retraining: after every N new human labels and/or on a cron expression."""

from datetime import datetime
from typing import Any

from sqlalchemy import DateTime, ForeignKey, String
from sqlalchemy.orm import Mapped, mapped_column

from app.models.base import Base, TimestampMixin


class TrainingSchedule(TimestampMixin, Base):
    """One schedule per project; the scheduler loop moves its watermarks with conditional updates.

    ``labels_seen`` is the number of human annotations the last triggered run accounted for;
    ``next_cron_at`` the next cron firing (UTC). Both are compared-and-set, so any number of
    scheduler loops (API processes, workers) start one job per trigger.
    """

    __tablename__ = "training_schedules"

    project_id: Mapped[int] = mapped_column(
        ForeignKey("projects.id", ondelete="CASCADE"), primary_key=True
    )
    enabled: Mapped[bool] = mapped_column(default=True)
    every_n_labels: Mapped[int | None]
    cron: Mapped[str | None] = mapped_column(String(200))
    debounce_seconds: Mapped[float] = mapped_column(default=10.0)
    train: Mapped[dict[str, Any]] = mapped_column(default=dict)  # a TrainRequest body
    labels_seen: Mapped[int] = mapped_column(default=0)
    next_cron_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    last_triggered_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    last_job_id: Mapped[int | None] = mapped_column(ForeignKey("jobs.id", ondelete="SET NULL"))
    last_reason: Mapped[str | None] = mapped_column(String(32))
    updated_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
