"""HTML pages: a server-rendered shell (Jinja2) whose ES modules talk only to the JSON API.

Pages: ``/projects`` (list, create, import), ``/projects/{id}/label`` (also ``/``),
``/projects/{id}/review``, ``/projects/{id}/verify`` and ``/projects/{id}/dashboard``. Every
page lists its keyboard shortcuts in a ``?`` help dialog rendered here, so the help exists
before any JS runs; the keys themselves live in ``ui/static/*.js``.
"""

import json
import mimetypes
from pathlib import Path
from typing import Any, Literal

from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates
from sqlalchemy.orm import Session

from app.api.deps import get_services
from app.models import Project
from app.schemas.ids import MAX_DB_ID
from app.services import projects as project_service

UI_DIR = Path(__file__).resolve().parents[2] / "ui"
API_BASE = "/api/v1"
LABEL_KEYS = ["1", "2", "3", "4", "5", "6", "7", "8", "9", "0"]
# Shortcut tables of each page; they mirror the key maps in ui/static/*.js.
COMMON_KEYS = [
    (["?"], "Show or hide this help"),
    (["Esc"], "Close this help"),
]
COMMAND_KEYS = [
    (["Enter", "a"], "Accept the model's suggestion (multilabel: submit the chosen labels)"),
    (["s"], "Skip this item"),
    (["u"], "Undo your last label (the item comes back on screen)"),
]
REVIEW_KEYS = [
    (["j", "↓"], "Next row"),
    (["k", "↑"], "Previous row"),
    (["/"], "Go to the filters"),
    (["m"], "Load more rows"),
]
VERIFY_KEYS = [
    (["n"], "Confirm: the mined item is really not of the anchor's label"),
    (["y"], "False negative: label the mined item with the anchor's label"),
    (["p"], "Switch to pseudo-labels"),
]
PSEUDO_KEYS = [
    (["y"], "Accept: the item is of the model's label (it becomes a human label)"),
    (["n"], "Reject the pseudo-label"),
    (["g"], "Switch to mined negatives"),
]
DASHBOARD_KEYS = [(["r"], "Refresh now (the page also refreshes itself)")]
PROJECTS_KEYS = [
    (["c"], "Go to the new-project form"),
    (["i"], "Go to the import form"),
]
# Pool text may contain markup: the page never runs inline code, so a stray <script> is inert.
SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; img-src 'self' data:; script-src 'self'; style-src 'self'; "
        "connect-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
}

templates = Jinja2Templates(directory=UI_DIR / "templates")
router = APIRouter(include_in_schema=False)


def mount_ui(app: FastAPI) -> None:
    """Serve ``ui/static`` at ``/static`` and the HTML pages."""
    mimetypes.add_type("text/javascript", ".js")  # some OS tables map .js to text/plain
    from app.api.login import UiLogin, install_login

    app.mount("/static", StaticFiles(directory=UI_DIR / "static"), name="static")
    install_login(app)
    app.include_router(router, dependencies=UiLogin)


@router.get("/", response_class=HTMLResponse)
def label_home(request: Request, project: str | None = None) -> HTMLResponse:
    """The labeling page for ``?project=<id>`` (default: the newest project)."""
    with get_services(request).sessionmaker() as session:
        projects = _visible(request, project_service.list_projects(session))
        if not projects:
            return _render(request, "label.html", {"projects": [], "project": None})
        if project is None or project == "":
            chosen: Project | None = projects[0]
        else:
            chosen = next((p for p in projects if str(p.id) == project.strip()), None)
        if chosen is None:
            return _not_found(request, f"There is no project {project!r}.")
        return _label_page(request, session, projects, chosen)


@router.get("/projects", response_class=HTMLResponse)
def projects_page(request: Request) -> HTMLResponse:
    """Every project with its counts, a new-project form and a file import."""
    with get_services(request).sessionmaker() as session:
        projects = _visible(request, project_service.list_projects(session))
        rows = [(p, project_service.project_counts(session, p)) for p in projects]
        context = {"page": "projects", "project": None, "rows": rows, "page_keys": PROJECTS_KEYS}
        return _render(request, "projects.html", context)


@router.get("/projects/{project_id}/label", response_class=HTMLResponse)
def label_project(request: Request, project_id: int) -> HTMLResponse:
    """The labeling page of one project."""
    with get_services(request).sessionmaker() as session:
        projects = _visible(request, project_service.list_projects(session))
        chosen = next((p for p in projects if p.id == project_id), None)
        if chosen is None:
            return _not_found(request, f"There is no project {project_id}.")
        return _label_page(request, session, projects, chosen)


@router.get("/projects/{project_id}/review", response_class=HTMLResponse)
def review_project(request: Request, project_id: int) -> HTMLResponse:
    """Review mode: current labels filtered by label, source, annotator and disagreement with
    the model (filters in the URL), relabel in place."""
    return _project_page(request, project_id, "review", REVIEW_KEYS)


@router.get("/projects/{project_id}/verify", response_class=HTMLResponse)
def verify_project(
    request: Request, project_id: int, mode: Literal["negatives", "pseudo"] = "negatives"
) -> HTMLResponse:
    """Verify mode: confirm or reject mined negatives queued by ``negatives/mine``
    (``?mode=negatives``), or pseudo-labels a training job routed for confirmation
    (``?mode=pseudo``; a number key rejects and corrects the label)."""
    keys = VERIFY_KEYS if mode == "negatives" else PSEUDO_KEYS
    return _project_page(request, project_id, "verify", keys, mode=mode)


@router.get("/projects/{project_id}/dashboard", response_class=HTMLResponse)
def dashboard_project(request: Request, project_id: int) -> HTMLResponse:
    """The dashboard: labels over time, class balance, learning curve, jobs, annotators."""
    return _project_page(request, project_id, "dashboard", DASHBOARD_KEYS)


def _visible(request: Request, projects: Any) -> list[Project]:
    """The projects the page's principal may use (admins: all)."""
    principal = getattr(request.state, "principal", None)
    return [p for p in projects if principal is None or principal.may_use(p.id)]


def label_keys_for(labels: list[str]) -> list[str | None]:
    """Keyboard key of each label: the label itself when every label is a distinct digit
    (digits: press 3 for "3"), else 1..9 then 0 by position (none past the tenth)."""
    if len(set(labels)) == len(labels) and all(len(x) == 1 and x.isdigit() for x in labels):
        return list(labels)
    return [LABEL_KEYS[i] if i < len(LABEL_KEYS) else None for i in range(len(labels))]


def _project_page(
    request: Request,
    project_id: int,
    page: str,
    keys: list[tuple[list[str], str]],
    **extra: Any,
) -> HTMLResponse:
    with get_services(request).sessionmaker() as session:
        project = session.get(Project, project_id) if 1 <= project_id <= MAX_DB_ID else None
        if project is None:
            return _not_found(request, f"There is no project {project_id}.")
        context = {
            "page": page,
            "project": project,
            "labels_json": json.dumps(project.labels),
            "label_keys": list(zip(project.labels, label_keys_for(project.labels), strict=True)),
            "page_keys": keys,
            **extra,
        }
        return _render(request, f"{page}.html", context)


def _label_page(
    request: Request, session: Session, projects: Any, project: Project
) -> HTMLResponse:
    label_keys = list(zip(project.labels, label_keys_for(project.labels), strict=True))
    context = {
        "page": "label",
        "projects": projects,
        "project": project,
        "labels_json": json.dumps(project.labels),
        "label_keys": label_keys,
        "command_keys": COMMAND_KEYS,
        "counts": project_service.project_counts(session, project),
    }
    return _render(request, "label.html", context)


def _not_found(request: Request, message: str) -> HTMLResponse:
    context = {"heading": "Not found", "message": message}
    return _render(request, "base.html", context, status_code=404)


def _render(
    request: Request, name: str, context: dict[str, Any], status_code: int = 200
) -> HTMLResponse:
    root = request.scope.get("root_path", "").rstrip("/")
    context = {
        "root": root,
        "api_base": root + API_BASE,
        "origin": str(request.base_url).rstrip("/"),
        "common_keys": COMMON_KEYS,
        "csrf_token": getattr(request.state, "csrf_token", ""),
        "principal": getattr(request.state, "principal", None),
        **context,
    }
    response = templates.TemplateResponse(request, name, context, status_code=status_code)
    response.headers.update(SECURITY_HEADERS)
    return response
