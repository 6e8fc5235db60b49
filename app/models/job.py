"""Background jobs: the durable record of every training and import run."""

from datetime import datetime
from typing import Any

from sqlalchemy import DateTime, Float, ForeignKey, Index, String, Text, UniqueConstraint, text
from sqlalchemy.orm import Mapped, mapped_column

from app.models.base import Base, TimestampMixin


class JobStatus:
    """Values of ``Job.status``."""

    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"
    FINISHED = (SUCCEEDED, FAILED, CANCELLED)


class Job(TimestampMixin, Base):
    """A background job (``kind``: train or import) and its progress."""

    __tablename__ = "jobs"
    __table_args__ = (
        UniqueConstraint("project_id", "idempotency_key"),
        # at most one training per project, enforced by the database (two API processes
        # racing past the service's check cannot both insert one)
        Index(
            "uq_jobs_one_active_training", "project_id", unique=True,
            sqlite_where=text("kind = 'train' AND status IN ('queued', 'running')"),
            postgresql_where=text("kind = 'train' AND status IN ('queued', 'running')"),
        ),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    project_id: Mapped[int] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"))
    kind: Mapped[str] = mapped_column(String(32))
    status: Mapped[str] = mapped_column(String(16), default=JobStatus.QUEUED, index=True)
    progress: Mapped[float] = mapped_column(Float, default=0.0)
    message: Mapped[str | None] = mapped_column(String(500))
    params: Mapped[dict[str, Any]] = mapped_column(default=dict)
    result: Mapped[dict[str, Any]] = mapped_column(default=dict)
    error: Mapped[str | None] = mapped_column(Text)
    cancel_requested: Mapped[bool] = mapped_column(default=False)
    idempotency_key: Mapped[str | None] = mapped_column(String(200))
    started_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    heartbeat_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    # per-epoch entries {stage, epoch, n_epochs, loss, progress, t}: what the learner reported
    epoch_metrics: Mapped[list[Any]] = mapped_column(default=list)
    log_tail: Mapped[str | None] = mapped_column(Text)  # the last progress lines, newest last
    worker: Mapped[str | None] = mapped_column(String(200))  # host:pid that claimed the job
