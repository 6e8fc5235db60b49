"""Users, hashed API keys, per-project membership and server-side UI sessions."""

from datetime import datetime

from sqlalchemy import CheckConstraint, DateTime, ForeignKey, LargeBinary, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column, relationship

from app.models.base import Base, TimestampMixin

ROLES = ("admin", "pipeline", "annotator")


class User(TimestampMixin, Base):
    """A principal: ``role`` is admin | pipeline | annotator. ``password_hash`` is
    ``scrypt$n$r$p$salt_hex$hash_hex`` (stdlib ``hashlib.scrypt``) or None (keys only)."""

    __tablename__ = "users"
    __table_args__ = (CheckConstraint("role IN ('admin', 'pipeline', 'annotator')", name="role"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    role: Mapped[str] = mapped_column(String(16))
    password_hash: Mapped[str | None] = mapped_column(String(300))
    disabled: Mapped[bool] = mapped_column(default=False)


class ApiKey(TimestampMixin, Base):
    """An API key: ``secret_hash`` (unique) is SHA-256 of the whole key (32 bytes) and finds
    the row; ``prefix`` is its first characters, for display. The key itself is never stored."""

    __tablename__ = "api_keys"

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    prefix: Mapped[str] = mapped_column(String(32))
    secret_hash: Mapped[bytes] = mapped_column(LargeBinary(32), unique=True)
    name: Mapped[str] = mapped_column(String(200), default="")
    last_used_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    revoked_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))

    user: Mapped[User] = relationship(lazy="joined")


class ProjectMember(TimestampMixin, Base):
    """``user_id`` may use project ``project_id`` (admins need no membership)."""

    __tablename__ = "project_members"
    __table_args__ = (UniqueConstraint("project_id", "user_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    project_id: Mapped[int] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"))
    user_id: Mapped[int] = mapped_column(
        ForeignKey("users.id", ondelete="CASCADE"), index=True
    )


class UiSession(TimestampMixin, Base):
    """A UI login: SHA-256 of the cookie token (``token_hash``, unique); deleting the row
    logs that cookie out."""

    __tablename__ = "ui_sessions"

    id: Mapped[int] = mapped_column(primary_key=True)
    token_hash: Mapped[bytes] = mapped_column(LargeBinary(32), unique=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))

    user: Mapped[User] = relationship(lazy="joined")
