"""Items of a project's pool and their leases in the annotation queue."""

from datetime import datetime
from typing import Any

from sqlalchemy import DateTime, Float, ForeignKey, Index, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from app.models.base import Base, TimestampMixin


class ItemStatus:
    """Values of ``Item.status``."""

    UNLABELED = "unlabeled"
    LABELED = "labeled"
    PSEUDO = "pseudo"
    ALL = (UNLABELED, LABELED, PSEUDO)


class Item(TimestampMixin, Base):
    """One pool item. ``position`` is its row in the project's arrays.

    ``labels``/``label_source`` cache the current label: the latest human (or imported) one,
    else the active checkpoint's pseudo-label. The full history is in ``annotations``.
    """

    __tablename__ = "items"
    __table_args__ = (
        UniqueConstraint("project_id", "external_id"),
        UniqueConstraint("project_id", "position"),
        Index("ix_items_project_status", "project_id", "status"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    project_id: Mapped[int] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"))
    external_id: Mapped[str] = mapped_column(String(255))
    position: Mapped[int]
    text: Mapped[str | None] = mapped_column(Text)
    payload: Mapped[dict[str, Any]] = mapped_column(default=dict)
    meta: Mapped[dict[str, Any]] = mapped_column(default=dict)
    status: Mapped[str] = mapped_column(String(16), default=ItemStatus.UNLABELED)
    labels: Mapped[list[str] | None] = mapped_column(default=None)
    label_source: Mapped[str | None] = mapped_column(String(16))
    label_confidence: Mapped[float | None] = mapped_column(Float)
    lease_id: Mapped[str | None] = mapped_column(String(32))
    leased_by: Mapped[str | None] = mapped_column(String(200))
    lease_expires_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class LeaseStatus:
    """Values of ``Lease.status``."""

    ACTIVE = "active"
    COMPLETED = "completed"
    SKIPPED = "skipped"
    EXPIRED = "expired"


class Lease(TimestampMixin, Base):
    """One serving of an item to an annotator by ``/next``, with why it was picked."""

    __tablename__ = "leases"
    # status last: /next's "not skipped by this annotator" check reads only the skipped rows
    # of an annotator who may hold thousands of completed leases
    __table_args__ = (
        Index("ix_leases_project_annotator_status", "project_id", "annotator", "status"),
    )

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    project_id: Mapped[int] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"))
    item_id: Mapped[int] = mapped_column(ForeignKey("items.id", ondelete="CASCADE"), index=True)
    annotator: Mapped[str] = mapped_column(String(200))
    strategy: Mapped[str] = mapped_column(String(64))
    score: Mapped[float | None] = mapped_column(Float)
    rank: Mapped[int]
    checkpoint_id: Mapped[int | None] = mapped_column(
        ForeignKey("checkpoints.id", ondelete="SET NULL")
    )
    seed: Mapped[int | None]
    status: Mapped[str] = mapped_column(String(16), default=LeaseStatus.ACTIVE)
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    closed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
