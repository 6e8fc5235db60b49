"""Render every error as RFC 9457 problem+json."""

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy import exc as sa_exc
from starlette.exceptions import HTTPException as StarletteHTTPException

from app.errors import AppError

log = logging.getLogger(__name__)
PROBLEM = "application/problem+json"
DATABASE_RETRY_AFTER_S = 2


def problem(status: int, title: str, detail: str, code: str, **extra: Any) -> JSONResponse:
    """A problem+json response."""
    body = {
        "type": f"https://quarry.dev/problems/{code}",
        "title": title,
        "status": status,
        "detail": detail,
        "code": code,
        **extra,
    }
    return JSONResponse(body, status_code=status, media_type=PROBLEM)


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, str | int | float | bool) or value is None:
        return value
    return str(value)


def install_error_handlers(app: FastAPI) -> None:
    """Register the handlers that turn errors into problem+json."""

    @app.exception_handler(AppError)
    async def _app_error(_request: Request, exc: AppError) -> JSONResponse:
        context = _jsonable(exc.context)
        extra: dict[str, Any] = {"context": context}
        if "field" in context:
            extra["errors"] = [{"loc": [context["field"]], "msg": exc.message}]
        if "rows" in context:
            extra["errors"] = [
                {"loc": ["row", r.get("row"), r.get("field")], "msg": r.get("msg")}
                for r in context["rows"]
            ]
        return problem(exc.status_code, exc.title, exc.message, exc.code, **extra)

    @app.exception_handler(RequestValidationError)
    async def _validation(_request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = [
            {"loc": [str(p) for p in err.get("loc", ())], "msg": err.get("msg", "")}
            for err in exc.errors()
        ]
        fields = ", ".join(".".join(e["loc"][1:] or e["loc"]) for e in errors)
        return problem(
            422, "Invalid request", f"invalid field(s): {fields}", "validation_error", errors=errors
        )

    @app.exception_handler(StarletteHTTPException)
    async def _http(_request: Request, exc: StarletteHTTPException) -> JSONResponse:
        return problem(exc.status_code, str(exc.detail), str(exc.detail), f"http_{exc.status_code}")

    # the database is down, restarting or out of connections: transient, nothing was stored
    # (the request's transaction never committed), so tell the client to retry
    @app.exception_handler(sa_exc.OperationalError)
    @app.exception_handler(sa_exc.TimeoutError)
    async def _database_unavailable(_request: Request, exc: Exception) -> JSONResponse:
        log.warning("database unavailable: %s", type(exc).__name__, exc_info=exc)
        response = problem(
            503, "Database unavailable",
            "the database did not answer; nothing was stored, retry shortly",
            "database_unavailable",
        )
        response.headers["Retry-After"] = str(DATABASE_RETRY_AFTER_S)
        return response

    @app.exception_handler(Exception)
    async def _unhandled(_request: Request, exc: Exception) -> JSONResponse:
        log.error("unhandled error", exc_info=exc)
        return problem(500, "Internal error", "an unexpected error occurred", "internal_error")
