"""Append-only annotation history."""

from typing import Any

from sqlalchemy import Float, ForeignKey, Index, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from app.models.base import Base, TimestampMixin


class LabelSource:
    """Values of ``Annotation.source``."""

    HUMAN = "human"
    IMPORTED = "imported"
    PSEUDO = "pseudo"
    ALL = (HUMAN, IMPORTED, PSEUDO)


class Annotation(TimestampMixin, Base):
    """One label event; rows are never updated or deleted by the service."""

    __tablename__ = "annotations"
    __table_args__ = (
        UniqueConstraint("project_id", "idempotency_key"),
        Index("ix_annotations_item_created", "item_id", "created_at"),
        Index("ix_annotations_project_source", "project_id", "source"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    project_id: Mapped[int] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"))
    item_id: Mapped[int] = mapped_column(ForeignKey("items.id", ondelete="CASCADE"))
    labels: Mapped[list[str]]
    annotator: Mapped[str | None] = mapped_column(String(200))
    source: Mapped[str] = mapped_column(String(16))
    confidence: Mapped[float | None] = mapped_column(Float)
    method: Mapped[str | None] = mapped_column(String(64))
    checkpoint_id: Mapped[int | None] = mapped_column(
        ForeignKey("checkpoints.id", ondelete="SET NULL")
    )
    lease_id: Mapped[str | None] = mapped_column(String(32))
    idempotency_key: Mapped[str | None] = mapped_column(String(200))
    extra: Mapped[dict[str, Any]] = mapped_column(default=dict)
