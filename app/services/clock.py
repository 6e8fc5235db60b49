"""UTC time: the current moment, and stored moments made timezone-aware."""

from datetime import UTC, datetime
from typing import overload


def now_utc() -> datetime:
    """Current time in UTC."""
    return datetime.now(UTC)


@overload
def as_utc(moment: datetime) -> datetime: ...
@overload
def as_utc(moment: None) -> None: ...
def as_utc(moment: datetime | None) -> datetime | None:
    """``moment`` with UTC as its timezone when it has none (SQLite returns naive datetimes;
    every stored time is UTC); aware datetimes and ``None`` are returned unchanged."""
    if moment is None or moment.tzinfo is not None:
        return moment
    return moment.replace(tzinfo=UTC)
