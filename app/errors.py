"""One error vocabulary for the whole service (no FastAPI import).

Every error carries its HTTP status and a stable machine-readable ``code``; the API renders it
once as RFC 9457 problem+json.
"""

from typing import ClassVar


class AppError(Exception):
    """Base of every error the service raises on purpose."""

    status_code: ClassVar[int] = 500
    code: ClassVar[str] = "internal_error"
    title: ClassVar[str] = "Internal error"

    def __init__(self, message: str, **context: object) -> None:
        super().__init__(message)
        self.message = message
        self.context = context


class NotFound(AppError):
    status_code = 404
    code = "not_found"
    title = "Not found"

    def __init__(self, entity: str, key: object) -> None:
        super().__init__(f"{entity} {key!r} not found", entity=entity, key=key)


class Conflict(AppError):
    status_code = 409
    code = "conflict"
    title = "Conflict"


class InvalidInput(AppError):
    """Bad input that passed schema validation; ``field`` names what is wrong."""

    status_code = 422
    code = "invalid_input"
    title = "Invalid input"

    def __init__(self, message: str, *, field: str, **context: object) -> None:
        super().__init__(message, field=field, **context)
        self.field = field


class InvalidRows(AppError):
    """An import had bad rows; nothing was stored. ``rows`` lists ``{row, field, msg}``."""

    status_code = 422
    code = "invalid_rows"
    title = "Invalid rows"

    def __init__(self, rows: list[dict[str, object]], total_bad: int | None = None) -> None:
        n = total_bad if total_bad is not None else len(rows)
        super().__init__(f"{n} row(s) are invalid; nothing was imported", rows=rows, n_bad=n)
        self.rows = rows


class PayloadTooLarge(AppError):
    status_code = 413
    code = "payload_too_large"
    title = "Payload too large"


class UnknownStrategy(AppError):
    status_code = 422
    code = "unknown_strategy"
    title = "Unknown strategy"

    def __init__(self, name: str, available: list[str]) -> None:
        super().__init__(
            f"unknown strategy {name!r}; available: {', '.join(available)}",
            field="strategy",
            available=available,
        )


class InvalidStrategyParams(AppError):
    status_code = 422
    code = "invalid_strategy_params"
    title = "Invalid strategy parameters"

    def __init__(self, name: str, reason: str) -> None:
        super().__init__(f"bad params for strategy {name!r}: {reason}", field="params")


class UnsupportedTask(AppError):
    status_code = 422
    code = "unsupported_task"
    title = "Strategy does not support this task"


class StrategyUnavailable(AppError):
    """A strategy that is listed but cannot run here (e.g. ALiPy's LAL offline)."""

    status_code = 422
    code = "strategy_unavailable"
    title = "Strategy unavailable"


class StrategyFailed(AppError):
    status_code = 500
    code = "strategy_failed"
    title = "Query strategy failed"


class PoolExhausted(AppError):
    status_code = 409
    code = "pool_exhausted"
    title = "Pool exhausted"


class ModelNotReady(AppError):
    status_code = 409
    code = "model_not_ready"
    title = "No trained model yet"


class LabelConflict(AppError):
    """A label would silently overwrite another annotator's label."""

    status_code = 409
    code = "label_conflict"
    title = "Label conflict"


class JobFailed(AppError):
    status_code = 500
    code = "job_failed"
    title = "Job failed"


class Unauthorized(AppError):
    """No credentials, or a wrong, revoked or expired key or session."""

    status_code = 401
    code = "unauthorized"
    title = "Authentication required"


class Forbidden(AppError):
    """Authenticated, but the role may not do this (``required`` lists the roles that may)."""

    status_code = 403
    code = "forbidden"
    title = "Forbidden"
