"""Projects: a label set, a task type and a pool of items."""

from typing import TYPE_CHECKING, Any

from sqlalchemy import ForeignKey, String
from sqlalchemy.orm import Mapped, mapped_column, relationship

from app.models.base import Base, TimestampMixin

if TYPE_CHECKING:
    from app.models.checkpoint import Checkpoint


class Project(TimestampMixin, Base):
    """A labeling project. ``pool_size`` counts positions in its artifact arrays."""

    __tablename__ = "projects"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    task: Mapped[str] = mapped_column(String(16))
    labels: Mapped[list[str]]
    modality: Mapped[str] = mapped_column(String(16))
    embedder: Mapped[str] = mapped_column(String(64))
    feature_dim: Mapped[int | None]
    pool_size: Mapped[int] = mapped_column(default=0)
    queue_strategy: Mapped[str] = mapped_column(String(64), default="margin")
    settings: Mapped[dict[str, Any]] = mapped_column(default=dict)
    # body of POST /train (a partial TrainRequest) used for what a run does not say
    train_defaults: Mapped[dict[str, Any] | None]
    active_checkpoint_id: Mapped[int | None] = mapped_column(
        ForeignKey("checkpoints.id", use_alter=True, ondelete="SET NULL")
    )

    active_checkpoint: Mapped["Checkpoint | None"] = relationship(
        foreign_keys=[active_checkpoint_id], post_update=True, lazy="joined"
    )
