"""Pseudo-labels routed to annotators for confirmation, and the verdicts they gave."""

from datetime import datetime

from sqlalchemy import DateTime, Float, ForeignKey, Index, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from app.models.base import Base, TimestampMixin


class ReviewStatus:
    """Values of ``PseudoLabelReview.status``."""

    QUEUED = "queued"
    ACCEPTED = "accepted"
    REJECTED = "rejected"
    VERDICTS = (ACCEPTED, REJECTED)


class PseudoLabelReview(TimestampMixin, Base):
    """One pseudo-label (an ``annotations`` row with ``source="pseudo"``) asked about.

    ``labels``/``confidence``/``method`` copy the pseudo-label so the question survives a later
    checkpoint replacing it on the item. ``human_annotation_id`` is the human label that an
    accept (the pseudo-label itself) or a corrected reject added.
    """

    __tablename__ = "pseudo_label_reviews"
    __table_args__ = (
        UniqueConstraint("checkpoint_id", "item_id"),
        Index("ix_pseudo_label_reviews_project_status", "project_id", "status"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    project_id: Mapped[int] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"))
    checkpoint_id: Mapped[int] = mapped_column(
        ForeignKey("checkpoints.id", ondelete="CASCADE"), index=True
    )
    item_id: Mapped[int] = mapped_column(ForeignKey("items.id", ondelete="CASCADE"))
    pseudo_annotation_id: Mapped[int | None] = mapped_column(
        ForeignKey("annotations.id", ondelete="SET NULL")
    )
    labels: Mapped[list[str]]
    confidence: Mapped[float | None] = mapped_column(Float)
    method: Mapped[str | None] = mapped_column(String(64))
    status: Mapped[str] = mapped_column(String(16), default=ReviewStatus.QUEUED)
    leased_by: Mapped[str | None] = mapped_column(String(200))
    lease_expires_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    verdict_annotator: Mapped[str | None] = mapped_column(String(200))
    verdict_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    corrected_labels: Mapped[list[str] | None] = mapped_column(default=None)
    human_annotation_id: Mapped[int | None] = mapped_column(
        ForeignKey("annotations.id", ondelete="SET NULL")
    )
