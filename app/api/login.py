"""UI login: ``GET/POST /login`` (name+password, or an API key) and ``POST /logout``.

A login sets the ``quarry_session`` cookie (HttpOnly, SameSite=Lax, Secure on https; the
token is random and only its SHA-256 is stored in ``ui_sessions``). Pages receive the session's
CSRF token in ``<meta name="csrf-token">`` and ``ui/static/api.js`` sends it as
``X-CSRF-Token`` on every unsafe request. ``/login#key=<key>`` (a fragment never reaches the
server or its logs) lets ``ui/static/login.js`` post the key for you: the demo prints that link.
"""

from typing import Annotated

from fastapi import APIRouter, Depends, FastAPI, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from app.api.auth import CSRF_HEADER, SESSION_COOKIE, resolve_principal
from app.db import transaction
from app.errors import AppError, Forbidden, NotFound, Unauthorized
from app.services import auth as auth_service


class LoginRequired(Exception):
    """A UI page was asked for without a valid session: redirect to /login."""


def ui_login(request: Request) -> None:
    """Dependency of the HTML pages: a session (or key) principal, else LoginRequired; puts
    the page's CSRF token in ``request.state.csrf_token``."""
    try:
        principal = resolve_principal(request, check_csrf=False)
    except AppError as exc:
        raise LoginRequired from exc
    project_id = str(request.path_params.get("project_id", ""))
    if project_id.isdigit() and not principal.may_use(int(project_id)):
        raise NotFound("project", project_id)
    token = request.cookies.get(SESSION_COOKIE)
    request.state.csrf_token = auth_service.csrf_token(token) if token else ""
    request.state.principal = principal


UiLogin = [Depends(ui_login)]
router = APIRouter(include_in_schema=False)


@router.get("/login", response_class=HTMLResponse)
def login_page(request: Request, error: str = "") -> HTMLResponse:
    """The login form."""
    from app.api.ui import _render as render

    return render(request, "login.html", {"heading": "Log in", "error": error})


@router.post("/login")
def login(
    request: Request,
    name: Annotated[str, Form(max_length=200)] = "",
    password: Annotated[str, Form(max_length=200)] = "",
    key: Annotated[str, Form(max_length=500)] = "",
    next: Annotated[str, Form(max_length=500)] = "/projects",  # noqa: A002 - form field name
) -> Response:
    """Start a session; 303 to ``next`` (a local path), or the form again with 401 (429 with
    ``Retry-After`` after 10 failures from one address within 5 minutes)."""
    from app.api.ui import _render as render

    services = request.app.state.services
    client = request.client.host if request.client else "unknown"
    wait = services.logins.retry_after(client)
    if wait > 0:
        response = render(
            request, "login.html",
            {"heading": "Log in",
             "error": f"too many failed logins from this address; try again in {wait:.0f} s"},
            status_code=429,
        )
        response.headers["Retry-After"] = str(max(1, round(wait)))
        return response
    try:
        with transaction(services.sessionmaker) as session:
            _user, token, _csrf = auth_service.login(
                session, name=name or None, password=password or None, key=key or None
            )
    except Unauthorized as exc:
        services.logins.failed(client)
        return render(request, "login.html", {"heading": "Log in", "error": exc.message},
                      status_code=401)
    target = next if next.startswith("/") and not next.startswith("//") else "/projects"
    response = RedirectResponse(target, status_code=303)
    response.set_cookie(
        SESSION_COOKIE, token, max_age=auth_service.SESSION_HOURS * 3600, httponly=True,
        samesite="lax", secure=request.url.scheme == "https", path="/",
    )
    return response


@router.post("/logout")
def logout(request: Request, csrf: Annotated[str, Form(max_length=200)] = "") -> Response:
    """End the cookie's session (needs the CSRF token as header or ``csrf`` form field);
    303 to /login."""
    token = request.cookies.get(SESSION_COOKIE)
    if token:
        given = request.headers.get(CSRF_HEADER) or csrf
        if not auth_service.csrf_matches(token, given):
            raise Forbidden(f"logout needs the {CSRF_HEADER} header", field=CSRF_HEADER)
        with transaction(request.app.state.services.sessionmaker) as session:
            auth_service.logout(session, token)
    response = RedirectResponse("/login", status_code=303)
    response.delete_cookie(SESSION_COOKIE, path="/")
    return response


def install_login(app: FastAPI) -> None:
    """Mount /login and /logout, and send pages without a session to /login."""
    app.include_router(router)

    @app.exception_handler(LoginRequired)
    async def _to_login(request: Request, _exc: LoginRequired) -> Response:
        return RedirectResponse(f"/login?next={request.url.path}", status_code=303)
