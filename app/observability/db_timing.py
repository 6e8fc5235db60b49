"""Database time per request: statements and seconds spent in the driver, for the access log.

:func:`instrument` hooks an engine's ``before/after_cursor_execute`` events; while a
:class:`DbTime` is current (:data:`db_time_var`, set by the request middleware), every
statement run in that context (the thread-pool thread of a sync endpoint shares the holder
through the copied context) adds its wall time. A request's ``duration_ms - db_ms`` is then
Python time plus waits for the GIL and the thread pool; ``db_ms`` includes lock waits and the
database server's own work.
"""

import time
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Engine, event


@dataclass
class DbTime:
    """Accumulated driver time (seconds) and statement count of one request."""

    seconds: float = 0.0
    statements: int = 0


db_time_var: ContextVar[DbTime | None] = ContextVar("quarry_db_time", default=None)
_STARTED = "quarry_statement_started"


def instrument(engine: Engine) -> None:
    """Account each statement of ``engine`` to the current :class:`DbTime` (if any)."""

    @event.listens_for(engine, "before_cursor_execute")
    def _before(conn: Any, _cursor: Any, _sql: Any, _params: Any, _ctx: Any, _many: Any) -> None:
        if db_time_var.get() is not None:
            conn.info[_STARTED] = time.perf_counter()

    @event.listens_for(engine, "after_cursor_execute")
    def _after(conn: Any, _cursor: Any, _sql: Any, _params: Any, _ctx: Any, _many: Any) -> None:
        holder = db_time_var.get()
        started = conn.info.pop(_STARTED, None)
        if holder is not None and started is not None:
            holder.seconds += time.perf_counter() - started
            holder.statements += 1
