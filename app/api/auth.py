"""Authentication (API key or UI session cookie), role gates, and the users/keys/members API.

``authenticate`` runs on every ``/api/v1`` route except the health checks. It resolves the
principal from ``Authorization: Bearer <key>``, ``X-API-Key: <key>`` or the ``quarry_session``
cookie (cookie requests with an unsafe method also need ``X-CSRF-Token``), then applies the
route policy: admin may do everything; annotator only the routes in ``ANNOTATOR_ROUTES``;
pipeline everything except ``ADMIN_ROUTES``. For an annotator, the ``annotator`` of a query
string or JSON body is replaced by its own user name (any other value is ignored).
"""

from datetime import datetime
from typing import Annotated, Any
from urllib.parse import urlencode

from fastapi import APIRouter, Depends, Request
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import select
from starlette.concurrency import run_in_threadpool

from app.api.deps import ProjectDep, SessionDep
from app.errors import Forbidden, Unauthorized
from app.models import Job
from app.schemas.fields import SafeStr
from app.schemas.ids import DbId
from app.services import auth as auth_service
from app.services.auth import Principal

SESSION_COOKIE = "quarry_session"
CSRF_HEADER = "X-CSRF-Token"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
API_PREFIX = "/api/v1"
P = "/projects/{project_id}"
# (method, path under /api/v1) an annotator may call (project routes: member projects only)
ANNOTATOR_ROUTES = frozenset({
    ("GET", "/me"),
    ("GET", "/projects"),
    ("GET", P),
    ("GET", f"{P}/items"),
    ("GET", f"{P}/items/{{item_id}}"),
    ("GET", f"{P}/next"),
    ("GET", f"{P}/leases"),
    ("POST", f"{P}/leases/{{lease_id}}/skip"),
    ("GET", f"{P}/annotations"),
    ("POST", f"{P}/annotations"),
    ("POST", f"{P}/annotations/{{annotation_id}}/relabel"),
    ("POST", f"{P}/annotations/{{annotation_id}}/undo"),
    ("GET", f"{P}/stats"),
    ("GET", f"{P}/dashboard"),
    ("GET", f"{P}/negatives/verify/next"),
    ("POST", f"{P}/negatives/{{triplet_id}}/verdict"),
    ("GET", f"{P}/pseudo-labels/verify/next"),
    ("POST", f"{P}/pseudo-labels/{{review_id}}/verdict"),
    ("GET", f"{P}/pseudo-labels/precision"),
})
# routes only an admin may call (the users/keys/members routes gate themselves too)
ADMIN_ROUTES = frozenset({("POST", "/projects"), ("DELETE", P)})
# annotator-filter query parameters that are not an identity (left as given)
IDENTITY_EXEMPT = frozenset({("GET", f"{P}/annotations")})


def credentials(request: Request) -> tuple[str | None, str | None]:
    """``(api_key, session_token)`` from the request headers/cookie (either may be None)."""
    header = request.headers.get("authorization", "")
    scheme, _, value = header.partition(" ")
    if scheme.lower() == "bearer" and value.strip():
        return value.strip(), None
    if request.headers.get("x-api-key"):
        return request.headers["x-api-key"].strip(), None
    return None, request.cookies.get(SESSION_COOKIE) or None


def resolve_principal(request: Request, *, check_csrf: bool = True) -> Principal:
    """The caller, from a key or a session cookie: from the app's ``PrincipalCache``, else read
    in a short transaction of its own (so a long request holds no write lock for
    ``last_used_at``) and cached.

    Raises:
        Unauthorized: no credentials, or wrong/revoked/expired ones.
        Forbidden: a cookie request with an unsafe method lacks the session's CSRF token.
    """
    key, token = credentials(request)
    if key is None and token is None:
        raise Unauthorized(
            "send 'Authorization: Bearer <key>' (or log in to the UI)", field="Authorization"
        )
    if token is not None and check_csrf and request.method not in SAFE_METHODS and not (
        auth_service.csrf_matches(token, request.headers.get(CSRF_HEADER))
    ):
        raise Forbidden(
            f"a cookie-authenticated {request.method} needs the {CSRF_HEADER} header",
            field=CSRF_HEADER, reason="csrf",
        )
    services = request.app.state.services
    digest = auth_service.sha256(f"key:{key}" if key is not None else f"session:{token}")
    principal = services.principals.get(digest)
    if principal is None:
        with services.sessionmaker() as session, session.begin():
            if key is not None:
                user, via = auth_service.user_of_key(session, key), "key"
            else:
                assert token is not None
                user, via = auth_service.user_of_session(session, token)[0], "session"
            principal = auth_service.principal_of(session, user, via)
        services.principals.put(digest, principal)
    request.state.principal = principal
    return principal


def _route_key(request: Request) -> tuple[str, str]:
    route = request.scope.get("route")
    path = getattr(route, "path", request.url.path)
    if path.startswith(API_PREFIX):
        path = path[len(API_PREFIX):]
    return request.method, path


async def authenticate(request: Request) -> Principal:
    """Router dependency: the principal, after the role policy and annotator identity.

    Raises:
        Unauthorized, Forbidden (see ``resolve_principal``); Forbidden for a role that may
        not call this route, or a job of a project the caller is not a member of.
    """
    # the lookups are blocking database calls: keep them off the event loop
    principal = await run_in_threadpool(resolve_principal, request)
    method, path = _route_key(request)
    if (method, path) in ADMIN_ROUTES and not principal.is_admin:
        raise Forbidden(f"{method} {path} needs role admin", required=["admin"])
    if principal.role == "annotator":
        if (method, path) not in ANNOTATOR_ROUTES:
            raise Forbidden(
                f"role annotator may not call {method} {path}", required=["admin", "pipeline"]
            )
        if (method, path) not in IDENTITY_EXEMPT:
            await _impose_annotator(request, principal.name)
    job_id = request.path_params.get("job_id")
    if job_id is not None and not principal.is_admin:
        await run_in_threadpool(_check_job_member, request, principal, job_id)
    return principal


async def _impose_annotator(request: Request, name: str) -> None:
    """Set ``annotator`` to ``name`` in the query string and, on unsafe methods, in the JSON
    body object (FastAPI parsed it before the dependencies; the body fields are validated
    after them, from the same dict)."""
    pairs = [(k, v) for k, v in request.query_params.multi_items() if k != "annotator"]
    request.scope["query_string"] = urlencode([*pairs, ("annotator", name)]).encode("latin-1")
    if hasattr(request, "_query_params"):
        del request._query_params
    if request.method not in SAFE_METHODS and "json" in request.headers.get("content-type", ""):
        try:
            body = await request.json()
        except ValueError:
            return
        if isinstance(body, dict):
            body["annotator"] = name


def _check_job_member(request: Request, principal: Principal, job_id: str) -> None:
    services = request.app.state.services
    with services.sessionmaker() as session:
        try:
            project_id = session.scalar(select(Job.project_id).where(Job.id == int(job_id)))
        except ValueError:
            return  # the route's own validation answers 422
    if project_id is not None and not principal.may_use(project_id):
        raise Forbidden(f"job {job_id} belongs to a project you are not a member of")


PrincipalDep = Annotated[Principal, Depends(authenticate)]


def require_role(*roles: str) -> Any:
    """A dependency that lets only ``roles`` through (Forbidden otherwise)."""

    def check(request: Request) -> Principal:
        principal: Principal | None = getattr(request.state, "principal", None)
        if principal is None:
            principal = resolve_principal(request)
        if principal.role not in roles:
            raise Forbidden(f"needs role {' or '.join(roles)}", required=list(roles))
        return principal

    return Depends(check)


router = APIRouter(tags=["auth"])
AdminOnly = [require_role("admin")]


class UserCreate(BaseModel):
    """Body of ``POST /users``."""

    model_config = ConfigDict(extra="forbid")
    name: SafeStr = Field(min_length=1, max_length=200)
    role: str = Field(pattern="^(admin|pipeline|annotator)$")
    password: str | None = Field(None, min_length=8, max_length=200)
    projects: list[DbId] = Field(default_factory=list, description="Projects to join.")


class UserOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    id: int
    name: str
    role: str
    disabled: bool
    created_at: datetime


class KeyCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: SafeStr = Field("", max_length=200)


class KeyOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    id: int
    user_id: int
    prefix: str
    name: str
    created_at: datetime
    last_used_at: datetime | None
    revoked_at: datetime | None


class KeyCreated(KeyOut):
    key: str = Field(description="The API key; shown only in this response.")


class MeOut(BaseModel):
    id: int
    name: str
    role: str
    via: str
    projects: list[int]


@router.get("/me", response_model=MeOut)
def me(principal: PrincipalDep) -> MeOut:
    """The caller: user, role, how it authenticated, member projects."""
    return MeOut(id=principal.user_id, name=principal.name, role=principal.role,
                 via=principal.via, projects=sorted(principal.projects))


@router.post("/users", status_code=201, response_model=UserOut, dependencies=AdminOnly)
def create_user(body: UserCreate, session: SessionDep) -> Any:
    """Create a user (admin). 409 when the name is taken; 404 for an unknown project."""
    from app.api.deps import get_project_row

    user = auth_service.create_user(session, name=body.name, role=body.role, password=body.password)
    for project_id in body.projects:
        auth_service.add_member(session, get_project_row(session, project_id), user)
    return user


@router.get("/users", response_model=list[UserOut], dependencies=AdminOnly)
def list_users(session: SessionDep) -> Any:
    """Every user (admin)."""
    return auth_service.list_users(session)


@router.post("/users/{user_id}/keys", status_code=201, response_model=KeyCreated,
             dependencies=AdminOnly)
def create_key(user_id: DbId, session: SessionDep, body: KeyCreate | None = None) -> Any:
    """A new API key for a user (admin); the response is the only place the key appears."""
    user = auth_service.get_user(session, user_id)
    row, key = auth_service.create_key(session, user, name=body.name if body else "")
    return KeyCreated.model_validate({**KeyOut.model_validate(row).model_dump(), "key": key})


@router.get("/users/{user_id}/keys", response_model=list[KeyOut], dependencies=AdminOnly)
def list_keys(user_id: DbId, session: SessionDep) -> Any:
    """A user's keys without secrets (admin)."""
    auth_service.get_user(session, user_id)
    return auth_service.list_keys(session, user_id)


@router.delete("/keys/{key_id}", response_model=KeyOut, dependencies=AdminOnly)
def revoke_key(key_id: DbId, session: SessionDep) -> Any:
    """Revoke a key (admin); it answers 401 from now on. Idempotent."""
    return auth_service.revoke_key(session, key_id)


@router.get("/projects/{project_id}/members", response_model=list[UserOut],
            dependencies=AdminOnly)
def list_members(project: ProjectDep, session: SessionDep) -> Any:
    """The project's members (admin)."""
    return auth_service.members_of(session, project)


@router.put("/projects/{project_id}/members/{user_id}", response_model=UserOut,
            dependencies=AdminOnly)
def add_member(project: ProjectDep, user_id: DbId, session: SessionDep) -> Any:
    """Make a user a member of the project (admin); idempotent."""
    user = auth_service.get_user(session, user_id)
    auth_service.add_member(session, project, user)
    return user


@router.delete("/projects/{project_id}/members/{user_id}", status_code=204,
               dependencies=AdminOnly)
def remove_member(project: ProjectDep, user_id: DbId, session: SessionDep) -> None:
    """End a membership (admin); 404 when the user is not a member."""
    auth_service.remove_member(session, project, user_id)

