"""Authentication and authorization: keys, roles, membership, annotator identity, UI login
and CSRF, the bootstrap key."""

import hashlib
import os
import re

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select, text
from sqlalchemy.orm import Session, sessionmaker

from app.api.auth import CSRF_HEADER, SESSION_COOKIE
from app.models import Annotation, ApiKey
from app.services import auth as auth_service

HEALTH = {"/api/v1/healthz", "/api/v1/readyz"}


def _project(client: TestClient, name: str = "p") -> int:
    r = client.post("/api/v1/projects", json={
        "name": name, "task": "multiclass", "labels": ["a", "b"], "modality": "vector",
    })
    assert r.status_code == 201, r.text
    pid = r.json()["id"]
    r = client.post(f"/api/v1/projects/{pid}/items", json=[
        {"external_id": f"x{i}", "vector": [float(i), 1.0]} for i in range(4)
    ])
    assert r.status_code in (201, 202), r.text
    return pid


def _concrete(path: str) -> str:
    return re.sub(r"\{[^}]+\}", "1", path)


def test_anonymous_refused_on_every_route_but_health(anon_client: TestClient) -> None:
    spec = anon_client.get("/api/v1/openapi.json").json()
    checked = 0
    for path, ops in spec["paths"].items():
        for method in ops:
            r = anon_client.request(method.upper(), _concrete(path))
            if path in HEALTH:
                assert r.status_code in (200, 503), (method, path)
                continue
            assert r.status_code == 401, (method, path, r.status_code)
            assert r.json()["code"] == "unauthorized"
            checked += 1
    assert checked > 30


def test_wrong_and_revoked_key_401(client: TestClient, anon_client: TestClient) -> None:
    r = anon_client.get("/api/v1/projects", headers={"Authorization": "Bearer qk_nope"})
    assert r.status_code == 401
    user = client.post("/api/v1/users", json={"name": "bot", "role": "pipeline"}).json()
    created = client.post(f"/api/v1/users/{user['id']}/keys", json={"name": "ci"}).json()
    key = created["key"]
    assert anon_client.get("/api/v1/me", headers={"X-API-Key": key}).json()["name"] == "bot"
    assert client.delete(f"/api/v1/keys/{created['id']}").json()["revoked_at"] is not None
    r = anon_client.get("/api/v1/me", headers={"Authorization": f"Bearer {key}"})
    assert r.status_code == 401 and "revoked" in r.json()["detail"]


def test_keys_stored_hashed(client: TestClient, session: Session) -> None:
    user = client.post("/api/v1/users", json={"name": "h", "role": "annotator"}).json()
    key = client.post(f"/api/v1/users/{user['id']}/keys").json()["key"]
    assert len(key) >= 40
    rows = session.scalars(select(ApiKey).where(ApiKey.user_id == user["id"])).all()
    assert [r.secret_hash for r in rows] == [hashlib.sha256(key.encode()).digest()]
    dump = " ".join(str(v) for row in session.execute(text("SELECT * FROM api_keys")) for v in row)
    assert key not in dump and key[8:] not in dump


def test_role_matrix(client: TestClient, client_as) -> None:  # type: ignore[no-untyped-def]
    pid = _project(client)
    annotator = client_as("annotator", projects=(pid,))
    pipeline = client_as("pipeline", projects=(pid,))
    train = {"semi_supervised": {"method": "none"}}
    items = [{"external_id": "z", "vector": [0.0, 0.0]}]
    assert annotator.post(f"/api/v1/projects/{pid}/items", json=items).status_code == 403
    assert annotator.post(f"/api/v1/projects/{pid}/train", json=train).status_code == 403
    assert annotator.post("/api/v1/users/1/keys").json()["code"] == "forbidden"
    assert annotator.get(f"/api/v1/projects/{pid}").status_code == 200
    assert pipeline.post("/api/v1/users/1/keys").status_code == 403
    assert pipeline.get("/api/v1/users").status_code == 403
    new = {"name": "q", "task": "binary", "labels": ["a", "b"], "modality": "vector"}
    assert pipeline.post("/api/v1/projects", json=new).status_code == 403
    assert pipeline.post(f"/api/v1/projects/{pid}/items", json=items).status_code in (201, 202)
    assert pipeline.delete(f"/api/v1/projects/{pid}").status_code == 403


def test_membership(client: TestClient, client_as) -> None:  # type: ignore[no-untyped-def]
    mine, other = _project(client, "mine"), _project(client, "other")
    for role in ("annotator", "pipeline"):
        c = client_as(role, projects=(mine,))
        assert [p["id"] for p in c.get("/api/v1/projects").json()] == [mine]
        for path in ("", "/next", "/annotations", "/dashboard", "/stats"):
            r = c.get(f"/api/v1/projects/{other}{path}")
            assert r.status_code == 404, (role, path)
        assert c.get(f"/api/v1/projects/{mine}").status_code == 200
    member = client_as("annotator")
    me = member.get("/api/v1/me").json()
    assert me["projects"] == []
    assert client.put(f"/api/v1/projects/{other}/members/{me['id']}").status_code == 200
    assert member.get(f"/api/v1/projects/{other}").status_code == 200
    assert client.delete(f"/api/v1/projects/{other}/members/{me['id']}").status_code == 204
    assert member.get(f"/api/v1/projects/{other}").status_code == 404


def test_annotator_identity_enforced(
    client: TestClient, client_as, session: Session  # type: ignore[no-untyped-def]
) -> None:
    pid = _project(client)
    ann = client_as("annotator", projects=(pid,), name="alice")
    served = ann.get(f"/api/v1/projects/{pid}/next", params={"annotator": "mallory"})
    assert served.status_code == 200, served.text
    leased = client.get(f"/api/v1/projects/{pid}/leases", params={"annotator": "alice"}).json()
    assert len(leased) >= 1
    item_id = leased[0]["item_id"]
    r = ann.post(f"/api/v1/projects/{pid}/annotations",
                 json={"item_id": item_id, "label": "a", "annotator": "mallory"})
    assert r.status_code == 201, r.text
    row = session.scalar(select(Annotation).where(Annotation.item_id == item_id))
    assert row is not None and row.annotator == "alice"
    # an admin may still act for a simulated oracle
    r = client.post(f"/api/v1/projects/{pid}/annotations",
                    json={"item_id": item_id + 1, "label": "b", "annotator": "oracle"})
    assert r.status_code == 201 and r.json()["annotator"] == "oracle"


def _login_page_csrf(c: TestClient) -> str:
    html = c.get("/projects").text
    m = re.search(r'<meta name="csrf-token" content="([^"]+)"', html)
    assert m, html[:500]
    return m.group(1)


def test_login_csrf_logout(client: TestClient, sessionmaker_: sessionmaker[Session]) -> None:
    from tests.conftest import make_key

    pid = _project(client)
    make_key(sessionmaker_, "annotator", name="bob", projects=(pid,), password="correct horse")
    ui = TestClient(client.app, raise_server_exceptions=False)
    r = ui.get("/projects", follow_redirects=False)
    assert r.status_code in (302, 303, 307) and r.headers["location"].startswith("/login")
    assert ui.post("/login", data={"name": "bob", "password": "wrong pass"},
                   follow_redirects=False).status_code == 401
    r = ui.post("/login", data={"name": "bob", "password": "correct horse"},
                follow_redirects=False)
    assert r.status_code == 303, r.text
    cookie = r.headers["set-cookie"]
    assert SESSION_COOKIE in cookie and "HttpOnly" in cookie and "samesite=lax" in cookie.lower()
    assert ui.get("/api/v1/me").json()["via"] == "session"
    csrf = _login_page_csrf(ui)
    item_id = ui.get(f"/api/v1/projects/{pid}/next").json()["items"][0]["item"]["id"]
    body = {"item_id": item_id, "label": "a"}
    r = ui.post(f"/api/v1/projects/{pid}/annotations", json=body)
    assert r.status_code == 403 and r.json()["code"] == "forbidden"
    r = ui.post(f"/api/v1/projects/{pid}/annotations", json=body, headers={CSRF_HEADER: "x" * 64})
    assert r.status_code == 403
    r = ui.post(f"/api/v1/projects/{pid}/annotations", json=body, headers={CSRF_HEADER: csrf})
    assert r.status_code == 201, r.text
    assert r.json()["annotator"] == "bob"
    r = ui.post("/logout", headers={CSRF_HEADER: csrf}, follow_redirects=False)
    assert r.status_code == 303
    ui.cookies.clear()
    ui.cookies.set(SESSION_COOKIE, cookie.split(";")[0].split("=", 1)[1])
    assert ui.get("/api/v1/me").status_code == 401


def test_login_with_api_key(client: TestClient, admin_key: str) -> None:
    ui = TestClient(client.app, raise_server_exceptions=False)
    r = ui.post("/login", data={"key": admin_key}, follow_redirects=False)
    assert r.status_code == 303
    assert ui.get("/api/v1/me").json()["role"] == "admin"


def test_bootstrap_key(sessionmaker_: sessionmaker[Session], session: Session) -> None:
    from app.db import transaction

    secret = "b" * 30
    with pytest.raises(Exception, match="24"), transaction(sessionmaker_) as s:
        auth_service.ensure_bootstrap_admin(s, "short")
    for _ in range(2):
        with transaction(sessionmaker_) as s:
            user = auth_service.ensure_bootstrap_admin(s, secret)
    with sessionmaker_() as s:
        assert auth_service.user_of_key(s, secret).role == "admin"
        n = s.scalar(  # by hash: other tests' servers commit bootstrap keys of their own
            text("SELECT count(*) FROM api_keys WHERE secret_hash = :h"),
            {"h": auth_service.sha256(secret)},
        )
        assert n == 1 and user.name == "admin"


def test_bootstrap_key_at_startup(settings, services) -> None:  # type: ignore[no-untyped-def]
    from app.main import create_app

    settings.bootstrap_admin_key = "s" * 32
    with TestClient(create_app(settings, services), raise_server_exceptions=False) as c:
        r = c.get("/api/v1/me", headers={"Authorization": f"Bearer {'s' * 32}"})
        assert r.status_code == 200 and r.json()["role"] == "admin"


def test_password_hash_roundtrip() -> None:
    stored = auth_service.hash_password("longenough")
    assert stored.startswith("scrypt$") and "longenough" not in stored
    assert auth_service.verify_password("longenough", stored)
    assert not auth_service.verify_password("longenougH", stored)
    assert not auth_service.verify_password("x", "garbage")


def test_login_throttled_after_repeated_failures(
    client: TestClient, sessionmaker_: sessionmaker[Session], monkeypatch: pytest.MonkeyPatch
) -> None:
    from tests.conftest import make_key

    clock = [500.0]
    monkeypatch.setattr(auth_service.time, "monotonic", lambda: clock[0])
    make_key(sessionmaker_, "annotator", name="carol", password="right password")
    ui = TestClient(client.app, raise_server_exceptions=False)
    limit = client.app.state.services.logins.limit
    for _ in range(limit):
        assert ui.post("/login", data={"name": "carol", "password": "guess"},
                       follow_redirects=False).status_code == 401
    r = ui.post("/login", data={"name": "carol", "password": "right password"},
                follow_redirects=False)  # even the right password waits out the window
    assert r.status_code == 429 and int(r.headers["Retry-After"]) > 0
    clock[0] += client.app.state.services.logins.window
    r = ui.post("/login", data={"name": "carol", "password": "right password"},
                follow_redirects=False)
    assert r.status_code == 303


def test_bootstrap_key_retries_a_lost_startup_race(
    services, monkeypatch: pytest.MonkeyPatch  # type: ignore[no-untyped-def]
) -> None:
    from app.errors import Conflict
    from app.main import ensure_bootstrap_key

    real, calls = auth_service.create_user, []

    def racing(session, **kwargs):  # type: ignore[no-untyped-def]
        calls.append(kwargs["name"])
        if len(calls) == 1:  # another API process committed the user a moment ago
            raise Conflict(f"a user named {kwargs['name']!r} exists", field="name")
        return real(session, **kwargs)

    monkeypatch.setattr(auth_service, "create_user", racing)
    # a name of its own: servers other tests start commit an "admin" to the shared database
    name = f"boot-{os.urandom(4).hex()}"
    monkeypatch.setattr(auth_service, "BOOTSTRAP_USER", name)
    ensure_bootstrap_key(services, "r" * 30)
    assert calls == [name, name]
    with services.sessionmaker() as s:
        assert auth_service.user_of_key(s, "r" * 30).role == "admin"
