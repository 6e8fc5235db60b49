"""Structured logs: one JSON object per line, with the request id, route, status, duration
and job id of the context that logged it.

``configure_logging(fmt)`` is called by the CLI entry points (``quarry serve``, ``worker``,
...), never at import time. Context travels in ``contextvars`` (set by the request middleware
and by ``job_log_context`` around a job body), so every line logged while serving a request or
running a job carries its ids.
"""

import json
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import Any

request_id_var: ContextVar[str | None] = ContextVar("quarry_request_id", default=None)
job_id_var: ContextVar[int | None] = ContextVar("quarry_job_id", default=None)

# LogRecord attributes that are not user ``extra=`` fields
_RESERVED = set(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message", "asctime"}
NOISY = ("sentence_transformers", "alembic", "httpx", "faiss.loader", "uvicorn.access")


class ContextFilter(logging.Filter):
    """Adds ``request_id`` and ``job_id`` from the context to every record."""

    def filter(self, record: logging.LogRecord) -> bool:
        if getattr(record, "request_id", None) is None:
            record.request_id = request_id_var.get()
        if getattr(record, "job_id", None) is None:
            record.job_id = job_id_var.get()
        return True


class JsonFormatter(logging.Formatter):
    """``{"ts", "level", "logger", "message", ...extra fields, "exc_info"?}`` on one line.

    ``ts`` is ISO 8601 UTC with milliseconds; ``None`` context fields are left out; values
    JSON cannot hold are written with ``str``.
    """

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key, value in vars(record).items():
            if key not in _RESERVED and value is not None and not key.startswith("_"):
                entry[key] = value
        if record.exc_info:
            entry["exc_info"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str, ensure_ascii=False)


def configure_logging(fmt: str = "json", level: int = logging.INFO) -> None:
    """Replace the root handlers with one stderr handler in ``fmt`` ("json" or "text")."""
    handler = logging.StreamHandler()
    handler.addFilter(ContextFilter())
    if fmt == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter(
            "%(asctime)s %(levelname)s %(name)s: %(message)s"
        ))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)
    for noisy in NOISY:
        logging.getLogger(noisy).setLevel(logging.WARNING)
    for name in ("uvicorn", "uvicorn.error"):  # let uvicorn's lines reach our handler
        logging.getLogger(name).handlers.clear()
        logging.getLogger(name).propagate = True


@contextmanager
def job_log_context(job_id: int) -> Iterator[None]:
    """Every line logged inside carries ``job_id``."""
    token = job_id_var.set(job_id)
    try:
        yield
    finally:
        job_id_var.reset(token)
