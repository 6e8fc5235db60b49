"""``quarry keys create|list|revoke`` and the demo's local admin key, on a private SQLite."""

from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from app import cli
from app.config import get_settings
from app.main import build_services, create_app


@pytest.fixture
def own_db(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):  # type: ignore[no-untyped-def]
    monkeypatch.setenv("QUARRY_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("QUARRY_DATABASE_URL", f"sqlite+pysqlite:///{tmp_path / 'q.db'}")
    monkeypatch.setenv("QUARRY_JOB_RUNNER", "inline")
    get_settings.cache_clear()
    yield get_settings()
    get_settings.cache_clear()


def test_keys_create_list_revoke(own_db, capsys) -> None:  # type: ignore[no-untyped-def]
    assert cli.main(["keys", "create", "--name", "ci", "--role", "pipeline"]) == 0
    key = capsys.readouterr().out.strip().splitlines()[-1]
    assert key.startswith("qk_") and len(key) > 40
    with TestClient(create_app(own_db), raise_server_exceptions=False) as c:
        me = c.get("/api/v1/me", headers={"Authorization": f"Bearer {key}"})
        assert me.status_code == 200 and me.json()["role"] == "pipeline"
        assert cli.main(["keys", "list"]) == 0
        listing = capsys.readouterr().out
        assert "ci" in listing and "active" in listing and key not in listing
        assert cli.main(["keys", "revoke", "1"]) == 0
        assert c.get("/api/v1/me", headers={"Authorization": f"Bearer {key}"}).status_code == 401
    assert cli.main(["keys", "create", "--name", "ci", "--role", "admin"]) == 2  # role clash


def test_demo_key_is_stable_and_admin(own_db) -> None:  # type: ignore[no-untyped-def]
    from app.cli_keys import demo_login_key
    from app.migrate import upgrade_to_head

    upgrade_to_head(own_db.database_url)
    services = build_services(own_db)
    key = demo_login_key(services)
    assert demo_login_key(services) == key
    assert (Path(own_db.data_dir) / "demo-admin.key").stat().st_mode & 0o077 == 0
    with TestClient(create_app(own_db, services), raise_server_exceptions=False) as c:
        assert c.get("/api/v1/me", headers={"X-API-Key": key}).json()["role"] == "admin"


def test_demo_binds_loopback_only() -> None:
    with pytest.raises(SystemExit):
        cli.build_parser().parse_args(["demo", "--host", "0.0.0.0"])
