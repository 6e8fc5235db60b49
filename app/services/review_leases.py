"""Leases on review queues (mined negatives to verify, pseudo-labels to confirm): the
annotator's open leases first, then free rows claimed with a conditional UPDATE, so two
annotators never hold one row and expired leases return rows to the queue."""

from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, or_, select, update
from sqlalchemy.orm import Session


def take_leases(
    session: Session,
    table: Any,
    *,
    eligible: ColumnElement[bool],
    guard: ColumnElement[bool],
    order_by: tuple[Any, ...],
    annotator: str,
    n: int,
    now: datetime,
    expires: datetime,
) -> list[int]:
    """Ids of up to ``n`` rows of ``table`` leased to ``annotator`` until ``expires``.

    ``table`` has ``id``, ``leased_by`` and ``lease_expires_at`` columns. Rows matching
    ``eligible`` that the annotator already holds come first (by id), then free rows in
    ``order_by`` order, each claimed only while it still matches ``guard`` and is free. An
    empty list means nothing is waiting; the caller flushes.
    """
    held = list(
        session.scalars(
            select(table.id)
            .where(eligible, table.leased_by == annotator, table.lease_expires_at > now)
            .order_by(table.id)
            .limit(n)
        ).all()
    )
    free = or_(table.lease_expires_at.is_(None), table.lease_expires_at <= now)
    while len(held) < n:
        conditions = [eligible, free]
        if held:
            conditions.append(table.id.not_in(held))
        candidates = session.scalars(
            select(table.id).where(*conditions).order_by(*order_by).limit(n - len(held))
        ).all()
        if not candidates:
            break
        for row_id in candidates:
            result = session.execute(
                update(table)
                .where(table.id == row_id, guard, free)
                .values(leased_by=annotator, lease_expires_at=expires)
                .execution_options(synchronize_session=False)
            )
            if result.rowcount == 1:  # type: ignore[attr-defined]
                held.append(row_id)
    return held
