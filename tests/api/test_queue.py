"""The annotation queue: leases, expiry, skip, resume, conflicts, idempotent annotations."""

from datetime import UTC, datetime, timedelta

from sqlalchemy import update

from app.models import Item
from tests.factories import API, make_pool, make_project


def _next(client, pid, annotator, n=1):
    return client.get(f"{API}/projects/{pid}/next", params={"annotator": annotator, "n": n})


def test_two_annotators_never_hold_the_same_item(client):
    project = make_project(client)
    pid = project["id"]
    make_pool(client, project, n=30)
    alice = {i["item"]["id"] for i in _next(client, pid, "alice", n=10).json()["items"]}
    bob = {i["item"]["id"] for i in _next(client, pid, "bob", n=10).json()["items"]}
    assert len(alice) == len(bob) == 10 and not alice & bob


def test_next_resumes_open_leases_and_records_why(client):
    project = make_project(client)
    pid = project["id"]
    make_pool(client, project, n=20)
    first = _next(client, pid, "alice").json()["items"][0]
    again = _next(client, pid, "alice").json()["items"][0]
    assert again["lease_id"] == first["lease_id"]
    assert first["acquisition"]["strategy"] == "typical"  # cold start: no model yet
    assert first["acquisition"]["rank"] >= 0 and first["suggestion"] is None
    leases = client.get(f"{API}/projects/{pid}/leases", params={"annotator": "alice"}).json()
    assert leases[0]["id"] == first["lease_id"] and leases[0]["status"] == "active"


def test_expired_leases_return_items(client, session, sessionmaker_):
    project = make_project(client)
    pid = project["id"]
    make_pool(client, project, n=3)
    held = [i["item"]["id"] for i in _next(client, pid, "alice", n=3).json()["items"]]
    assert _next(client, pid, "bob").status_code == 409  # all three leased
    with sessionmaker_() as s, s.begin():
        s.execute(update(Item).where(Item.id.in_(held)).values(
            lease_expires_at=datetime.now(UTC) - timedelta(seconds=1)))
    bob = _next(client, pid, "bob").json()["items"][0]
    assert bob["item"]["id"] in held
    statuses = {lease["status"] for lease in client.get(f"{API}/projects/{pid}/leases", params={"annotator": "alice"}).json()}
    assert statuses == {"expired"}


def test_skip_gives_item_back_but_not_to_the_same_annotator(client):
    project = make_project(client)
    pid = project["id"]
    make_pool(client, project, n=2)
    first = _next(client, pid, "alice").json()["items"][0]
    skipped = client.post(f"{API}/projects/{pid}/leases/{first['lease_id']}/skip")
    assert skipped.status_code == 200 and skipped.json()["status"] == "skipped"
    second = _next(client, pid, "alice").json()["items"][0]
    assert second["item"]["id"] != first["item"]["id"]
    bob = _next(client, pid, "bob").json()["items"][0]
    assert bob["item"]["id"] == first["item"]["id"]


def test_labeled_items_leave_the_queue_and_exhaustion_is_409(client):
    project = make_project(client)
    pid = project["id"]
    make_pool(client, project, n=2)
    for _ in range(2):
        served = _next(client, pid, "alice").json()["items"][0]
        posted = client.post(f"{API}/projects/{pid}/annotations", json={
            "item_id": served["item"]["id"], "label": "a", "lease_id": served["lease_id"]})
        assert posted.status_code == 201
    done = _next(client, pid, "alice")
    assert done.status_code == 409 and done.json()["code"] == "pool_exhausted"


def test_relabel_needs_replace(client):
    project = make_project(client)
    pid = project["id"]
    make_pool(client, project, n=1)
    item_id = client.get(f"{API}/projects/{pid}/items").json()["items"][0]["id"]
    url = f"{API}/projects/{pid}/annotations"
    assert client.post(url, json={"item_id": item_id, "label": "a", "annotator": "x"}).status_code == 201
    conflict = client.post(url, json={"item_id": item_id, "label": "b", "annotator": "y"})
    assert conflict.status_code == 409 and conflict.json()["context"]["current"] == ["a"]
    assert client.get(f"{API}/projects/{pid}/items/{item_id}").json()["labels"] == ["a"]
    same = client.post(url, json={"item_id": item_id, "label": "a", "annotator": "y"})
    assert same.status_code == 201  # agreement is history, not a conflict
    replaced = client.post(url, json={"item_id": item_id, "label": "b", "annotator": "y", "replace": True})
    assert replaced.status_code == 201
    detail = client.get(f"{API}/projects/{pid}/items/{item_id}").json()
    assert detail["labels"] == ["b"] and len(detail["annotations"]) == 3


def test_idempotency_key_makes_retries_safe(client):
    project = make_project(client)
    pid = project["id"]
    make_pool(client, project, n=1)
    item_id = client.get(f"{API}/projects/{pid}/items").json()["items"][0]["id"]
    url = f"{API}/projects/{pid}/annotations"
    headers = {"Idempotency-Key": "k-1"}
    a = client.post(url, json={"item_id": item_id, "label": "a"}, headers=headers)
    b = client.post(url, json={"item_id": item_id, "label": "a"}, headers=headers)
    assert (a.status_code, b.status_code) == (201, 200) and a.json()["id"] == b.json()["id"]
    other = client.post(url, json={"item_id": item_id, "label": "c"}, headers=headers)
    assert other.status_code == 409
    assert len(client.get(f"{API}/projects/{pid}/items/{item_id}").json()["annotations"]) == 1


def test_bad_annotations(client):
    project = make_project(client)
    pid = project["id"]
    make_pool(client, project, n=1)
    item_id = client.get(f"{API}/projects/{pid}/items").json()["items"][0]["id"]
    url = f"{API}/projects/{pid}/annotations"
    assert client.post(url, json={"item_id": item_id, "label": "zebra"}).json()["errors"][0]["loc"] == ["label"]
    assert client.post(url, json={"item_id": 999999, "label": "a"}).status_code == 404
    assert client.post(url, json={"item_id": item_id}).status_code == 422
    assert client.post(url, json={"item_id": item_id, "labels": ["a", "b"]}).status_code == 422


def test_batch_queries_skip_leased_items(client):
    project = make_project(client)
    pid = project["id"]
    make_pool(client, project, n=12)
    leased = {i["item"]["id"] for i in _next(client, pid, "alice", n=10).json()["items"]}
    batch = client.post(f"{API}/projects/{pid}/queries", json={"strategy": "random", "batch_size": 2})
    assert batch.status_code == 201
    assert not leased & {i["item_id"] for i in batch.json()["items"]}
    too_many = client.post(f"{API}/projects/{pid}/queries", json={"strategy": "random", "batch_size": 3})
    assert too_many.status_code == 409


def test_asking_for_more_than_is_left_serves_what_is_left(client):
    project = make_project(client)
    pid = project["id"]
    make_pool(client, project, n=3)
    assert len(_next(client, pid, "alice", n=2).json()["items"]) == 2
    rest = _next(client, pid, "bob", n=2)
    assert rest.status_code == 200 and len(rest.json()["items"]) == 1
