"""Hard-negative mining runs and the triplets they produced."""

from datetime import datetime
from typing import Any

from sqlalchemy import DateTime, Float, ForeignKey, Index, String
from sqlalchemy.orm import Mapped, mapped_column

from app.models.base import Base, TimestampMixin


class MiningRun(TimestampMixin, Base):
    """One call of negatives/mine: its parameters and filter counters."""

    __tablename__ = "mining_runs"

    id: Mapped[int] = mapped_column(primary_key=True)
    project_id: Mapped[int] = mapped_column(
        ForeignKey("projects.id", ondelete="CASCADE"), index=True
    )
    params: Mapped[dict[str, Any]] = mapped_column(default=dict)
    dropped: Mapped[dict[str, Any]] = mapped_column(default=dict)
    n_anchors: Mapped[int]
    n_triplets: Mapped[int]
    checkpoint_id: Mapped[int | None] = mapped_column(
        ForeignKey("checkpoints.id", ondelete="SET NULL")
    )


class VerifyStatus:
    """Values of ``NegativeTriplet.verify_status`` (None: never queued for verification)."""

    QUEUED = "queued"
    NEGATIVE = "negative"
    FALSE_NEGATIVE = "false_negative"
    VERDICTS = (NEGATIVE, FALSE_NEGATIVE)


class NegativeTriplet(Base):
    """anchor / positive / negative item ids with the anchor-negative similarity.

    A triplet queued for verification ("is this really not a <anchor_label>?") is served under
    a lease (``leased_by`` / ``lease_expires_at``) and closed by an annotator's verdict; a
    false negative also adds a human label (``annotation_id``).
    """

    __tablename__ = "negative_triplets"
    __table_args__ = (Index("ix_negative_triplets_project_verify", "project_id", "verify_status"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    run_id: Mapped[int] = mapped_column(
        ForeignKey("mining_runs.id", ondelete="CASCADE"), index=True
    )
    project_id: Mapped[int] = mapped_column(
        ForeignKey("projects.id", ondelete="CASCADE"), index=True
    )
    anchor_item_id: Mapped[int] = mapped_column(ForeignKey("items.id", ondelete="CASCADE"))
    positive_item_id: Mapped[int | None] = mapped_column(
        ForeignKey("items.id", ondelete="CASCADE")
    )
    negative_item_id: Mapped[int] = mapped_column(ForeignKey("items.id", ondelete="CASCADE"))
    rank: Mapped[int]
    anchor_negative_score: Mapped[float] = mapped_column(Float)
    anchor_positive_score: Mapped[float | None] = mapped_column(Float)
    anchor_label: Mapped[str | None] = mapped_column(String(200))
    verify_status: Mapped[str | None] = mapped_column(String(16))
    leased_by: Mapped[str | None] = mapped_column(String(200))
    lease_expires_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    verdict_annotator: Mapped[str | None] = mapped_column(String(200))
    verdict_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    annotation_id: Mapped[int | None] = mapped_column(
        ForeignKey("annotations.id", ondelete="SET NULL")
    )
