"""Batch-mode queries (``POST /queries``) and the items each returned."""

from typing import Any

from sqlalchemy import Float, ForeignKey, Index, String
from sqlalchemy.orm import Mapped, mapped_column, relationship

from app.models.base import Base, TimestampMixin


class QueryBatch(TimestampMixin, Base):
    """One strategy call and its parameters."""

    __tablename__ = "query_batches"

    id: Mapped[int] = mapped_column(primary_key=True)
    project_id: Mapped[int] = mapped_column(
        ForeignKey("projects.id", ondelete="CASCADE"), index=True
    )
    strategy: Mapped[str] = mapped_column(String(64))
    params: Mapped[dict[str, Any]] = mapped_column(default=dict)
    batch_size: Mapped[int]
    seed: Mapped[int | None]
    checkpoint_id: Mapped[int | None] = mapped_column(
        ForeignKey("checkpoints.id", ondelete="SET NULL")
    )
    info: Mapped[dict[str, Any]] = mapped_column(default=dict)

    items: Mapped[list["QueryItem"]] = relationship(
        order_by="QueryItem.rank", cascade="all, delete-orphan", lazy="selectin"
    )


class QueryItem(Base):
    """One selected item of a batch, with its rank and acquisition score."""

    __tablename__ = "query_items"
    __table_args__ = (Index("ix_query_items_batch_rank", "batch_id", "rank"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    batch_id: Mapped[int] = mapped_column(ForeignKey("query_batches.id", ondelete="CASCADE"))
    item_id: Mapped[int] = mapped_column(ForeignKey("items.id", ondelete="CASCADE"))
    rank: Mapped[int]
    score: Mapped[float | None] = mapped_column(Float)
