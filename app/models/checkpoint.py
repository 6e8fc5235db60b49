"""Trained model versions; their arrays live in the artifact store at ``path``."""

from typing import Any

from sqlalchemy import ForeignKey, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from app.models.base import Base, TimestampMixin


class Checkpoint(TimestampMixin, Base):
    """One trained model version of a project."""

    __tablename__ = "checkpoints"
    __table_args__ = (UniqueConstraint("project_id", "version"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    project_id: Mapped[int] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"))
    version: Mapped[int]
    job_id: Mapped[int | None] = mapped_column(ForeignKey("jobs.id", ondelete="SET NULL"))
    path: Mapped[str] = mapped_column(String(500))
    pool_size: Mapped[int]
    metrics: Mapped[dict[str, Any]] = mapped_column(default=dict)
    label_counts: Mapped[dict[str, Any]] = mapped_column(default=dict)
    config: Mapped[dict[str, Any]] = mapped_column(default=dict)
    n_labeled: Mapped[int] = mapped_column(default=0)
    n_pseudo: Mapped[int] = mapped_column(default=0)
