"""One row per queue ranking: the stopping signal "top acquisition score over time"."""

from sqlalchemy import Float, ForeignKey, Index, String
from sqlalchemy.orm import Mapped, mapped_column

from app.models.base import Base, TimestampMixin


class QueueRanking(TimestampMixin, Base):
    """A ranking the annotation queue computed (after a retrain, on demand, or when dry)."""

    __tablename__ = "queue_rankings"
    __table_args__ = (Index("ix_queue_rankings_project_created", "project_id", "created_at"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    project_id: Mapped[int] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"))
    checkpoint_id: Mapped[int | None] = mapped_column(
        ForeignKey("checkpoints.id", ondelete="SET NULL")
    )
    strategy: Mapped[str] = mapped_column(String(64))
    reason: Mapped[str] = mapped_column(String(16))  # "auto" or "rerank"
    size: Mapped[int]
    top_score: Mapped[float | None] = mapped_column(Float)
    mean_score: Mapped[float | None] = mapped_column(Float)
    n_unlabeled: Mapped[int]
