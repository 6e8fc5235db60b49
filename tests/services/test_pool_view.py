"""pool_view.load: the pool in position order without reading every row on each query."""

from sqlalchemy import event, update

from app.models import Item, Project
from app.services import pool_view
from app.services.queue import now_utc
from app.storage import ArtifactStore
from tests.factories import API, make_pool, make_project


def _view(session, pid, settings):
    project = session.get(Project, pid)
    session.refresh(project)
    return pool_view.load(
        session, project, ArtifactStore(settings.data_dir), needs=frozenset(), now=now_utc()
    )


def test_view_matches_the_rows_labeled_and_leased(client, session, settings):
    project = make_project(client)
    pid = project["id"]
    make_pool(client, project, n=12, labeled=3)
    served = client.get(f"{API}/projects/{pid}/next", params={"annotator": "a", "n": 2}).json()
    view = _view(session, pid, settings)
    rows = {i.position: i for i in session.query(Item).filter(Item.project_id == pid)}
    assert view.item_ids.tolist() == [rows[p].id for p in range(12)]
    assert view.labeled.tolist() == [p < 3 for p in range(12)]
    assert view.labels[:3].tolist() == [0, 1, 2] and (view.labels[3:] == -1).all()
    leased = {s["item"]["position"] for s in served["items"]}
    assert set(view.blocked.nonzero()[0].tolist()) == leased


def test_position_ids_are_read_once_then_checked_cheaply(client, session, settings):
    project = make_project(client)
    pid = project["id"]
    make_pool(client, project, n=40)
    _view(session, pid, settings)  # fills the cache
    statements: list[str] = []
    listen = lambda *args: statements.append(args[2])  # noqa: E731
    event.listen(session.get_bind(), "before_cursor_execute", listen)
    try:
        view = _view(session, pid, settings)
    finally:
        event.remove(session.get_bind(), "before_cursor_execute", listen)
    assert view.item_ids.shape == (40,)
    # the full-pool read has no IN (...) list; the cheap check reads positions 0 and n - 1
    full_reads = [s for s in statements if "items.position, items.id" in s and " IN " not in s]
    assert full_reads == []


def test_position_ids_notice_changed_ids(client, session, settings):
    project = make_project(client)
    pid = project["id"]
    make_pool(client, project, n=5)
    before = _view(session, pid, settings).item_ids.copy()
    session.execute(update(Item).where(Item.project_id == pid).values(id=Item.id + 10_000))
    after = _view(session, pid, settings).item_ids
    assert after.tolist() == (before + 10_000).tolist()


def test_a_grown_pool_gets_its_new_ids(client, session, settings):
    project = make_project(client)
    pid = project["id"]
    make_pool(client, project, n=5)
    assert _view(session, pid, settings).n_items == 5
    records = [{"external_id": f"y{i}", "vector": [0.0] * 8} for i in range(3)]
    assert client.post(f"{API}/projects/{pid}/items", json=records).status_code == 201
    view = _view(session, pid, settings)
    rows = {i.position: i.id for i in session.query(Item).filter(Item.project_id == pid)}
    assert view.item_ids.tolist() == [rows[p] for p in range(8)]
