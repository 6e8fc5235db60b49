"""PrincipalCache: reuse within the TTL, invalidation on committed auth changes, expiry."""

from datetime import UTC, datetime

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import update

from app.db import transaction
from app.models import ApiKey
from app.services import auth
from app.services.auth import Principal, PrincipalCache


def _principal(name: str = "ann") -> Principal:
    return Principal(user_id=1, name=name, role="annotator", via="key")


def test_hit_within_ttl_then_expiry(monkeypatch: pytest.MonkeyPatch) -> None:
    clock = [100.0]
    monkeypatch.setattr(auth.time, "monotonic", lambda: clock[0])
    cache = PrincipalCache(ttl=5.0)
    cache.put(b"d", _principal())
    clock[0] = 104.9
    assert cache.get(b"d") == _principal()
    clock[0] = 105.0
    assert cache.get(b"d") is None


def test_zero_ttl_disables() -> None:
    cache = PrincipalCache(ttl=0)
    cache.put(b"d", _principal())
    assert cache.get(b"d") is None


def test_bounded_size_drops_oldest() -> None:
    cache = PrincipalCache(ttl=60, max_entries=2)
    for digest in (b"a", b"b", b"c"):
        cache.put(digest, _principal(digest.decode()))
    assert cache.get(b"a") is None
    assert cache.get(b"c") == _principal("c")


def test_committed_auth_change_invalidates(sessionmaker_) -> None:  # type: ignore[no-untyped-def]
    cache = PrincipalCache(ttl=60)
    cache.put(b"d", _principal())
    with pytest.raises(RuntimeError), transaction(sessionmaker_) as session:
        auth.auth_changed(session)
        raise RuntimeError("rolled back: no invalidation")
    assert cache.get(b"d") == _principal()
    with transaction(sessionmaker_) as session:
        auth.auth_changed(session)
    assert cache.get(b"d") is None


def test_revoke_from_another_process_applies_after_ttl(  # type: ignore[no-untyped-def]
    client: TestClient, sessionmaker_, monkeypatch: pytest.MonkeyPatch
) -> None:
    clock = [1000.0]
    monkeypatch.setattr(auth.time, "monotonic", lambda: clock[0])
    key = client.post("/api/v1/users", json={"name": "pipe", "role": "pipeline"}).json()
    created = client.post(f"/api/v1/users/{key['id']}/keys", json={"name": "k"}).json()
    pipe = TestClient(client.app, headers={"Authorization": f"Bearer {created['key']}"})
    assert pipe.get("/api/v1/me").status_code == 200
    with transaction(sessionmaker_) as session:  # as `quarry keys revoke` would, elsewhere
        session.execute(
            update(ApiKey).where(ApiKey.id == created["id"]).values(revoked_at=datetime.now(UTC))
        )
    assert pipe.get("/api/v1/me").status_code == 200  # cached: within auth_cache_seconds
    clock[0] += client.app.state.services.settings.auth_cache_seconds
    assert pipe.get("/api/v1/me").status_code == 401
