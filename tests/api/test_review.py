"""Review API: current annotations with filters, explicit relabel, undo (append-only)."""

import numpy as np

from tests.factories import API, label_items, make_pool, make_project


def _annotate(client, pid, item_id, label, annotator="ann", **extra):
    body = {"item_id": item_id, "label": label, "annotator": annotator, **extra}
    response = client.post(f"{API}/projects/{pid}/annotations", json=body)
    assert response.status_code == 201, response.text
    return response.json()


def _review(client, pid, **params):
    response = client.get(f"{API}/projects/{pid}/annotations", params=params)
    assert response.status_code == 200, response.text
    return response.json()


def _item_ids(client, pid, n):
    response = client.get(f"{API}/projects/{pid}/items", params={"limit": n})
    return [item["id"] for item in response.json()["items"]]


def test_lists_current_labels_newest_first_with_filters(client):
    project = make_project(client)
    pid = project["id"]
    make_pool(client, project, n=30, labeled=3)  # items 0..2 imported with labels a, b, c
    ids = _item_ids(client, pid, 30)
    _annotate(client, pid, ids[5], "a", annotator="ann")
    _annotate(client, pid, ids[6], "b", annotator="bob")
    first = _annotate(client, pid, ids[7], "a", annotator="bob")
    replaced = _annotate(client, pid, ids[7], "c", annotator="ann", replace=True)

    page = _review(client, pid)
    assert page["total"] == 6 and page["model_version"] is None
    assert [r["item"]["id"] for r in page["rows"][:3]] == [ids[7], ids[6], ids[5]]
    top = page["rows"][0]
    assert top["annotation"]["id"] == replaced["id"] != first["id"]  # the current one only
    assert top["annotation"]["labels"] == ["c"] and top["prediction"] is None
    assert top["disagrees"] is None and top["item"]["text"] == "item 7"

    imported = _review(client, pid, source="imported")["rows"]
    assert {r["item"]["id"] for r in imported} == set(ids[:3])
    assert [r["item"]["id"] for r in _review(client, pid, annotator="bob")["rows"]] == [ids[6]]
    by_a = _review(client, pid, label="a")["rows"]
    assert {r["item"]["id"] for r in by_a} == {ids[0], ids[5]}
    both = _review(client, pid, label="a", source="human")["rows"]
    assert [r["item"]["id"] for r in both] == [ids[5]]


def test_pages_follow_the_cursor(client):
    project = make_project(client)
    make_pool(client, project, n=12, labeled=7)
    seen, cursor = [], None
    while True:
        params = {"limit": 3, **({"cursor": cursor} if cursor else {})}
        page = _review(client, project["id"], **params)
        seen += [r["annotation"]["id"] for r in page["rows"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert len(seen) == 7 == len(set(seen)) and seen == sorted(seen, reverse=True)


def test_bad_filters_name_the_field(client):
    project = make_project(client)
    pid = project["id"]
    for params, field in [({"label": "zzz"}, "label"), ({"cursor": "%%%"}, "cursor")]:
        response = client.get(f"{API}/projects/{pid}/annotations", params=params)
        assert response.status_code == 422, params
        assert response.json()["errors"][0]["loc"][-1] == field
    response = client.get(f"{API}/projects/{pid}/annotations", params={"source": "robot"})
    assert response.status_code == 422 and response.json()["errors"][0]["loc"][-1] == "source"
    response = client.get(f"{API}/projects/{pid}/annotations", params={"disagreement": "true"})
    assert response.status_code == 409 and response.json()["code"] == "model_not_ready"


def test_disagreement_with_the_model(client):
    project = make_project(client)
    pid = project["id"]
    _vectors, classes = make_pool(client, project, n=60)
    label_items(client, project, classes, n=12)
    assert client.post(f"{API}/projects/{pid}/train", json={}).status_code == 202
    page = _review(client, pid, source="human")
    assert page["model_version"] == 1
    rows = page["rows"]
    assert all(r["prediction"] is not None and r["disagrees"] is False for r in rows)
    # A human label the model contradicts, on a not yet human-labeled item of class "a".
    pool = client.get(f"{API}/projects/{pid}/items", params={"limit": 60}).json()["items"]
    target = next(i for i in pool if i["status"] != "labeled" and classes[i["position"]] == 0)
    wrong = _annotate(client, pid, target["id"], "b", annotator="eve")
    disagreeing = _review(client, pid, disagreement="true")

    assert [r["annotation"]["id"] for r in disagreeing["rows"]] == [wrong["id"]]
    assert disagreeing["total"] == 1 and disagreeing["rows"][0]["prediction"]["label"] == "a"
    agreeing = _review(client, pid, disagreement="false")
    assert agreeing["total"] == 12 and wrong["id"] not in {
        r["annotation"]["id"] for r in agreeing["rows"]
    }
    pseudo = _review(client, pid, source="pseudo")
    assert pseudo["total"] > 0
    assert all(r["annotation"]["source"] == "pseudo" for r in pseudo["rows"])


def test_relabel_names_what_it_replaces(client):
    project = make_project(client)
    pid = project["id"]
    make_pool(client, project, n=10)
    item_id = _item_ids(client, pid, 1)[0]
    first = _annotate(client, pid, item_id, "a", annotator="ann")
    url = f"{API}/projects/{pid}/annotations/{first['id']}/relabel"
    key = {"Idempotency-Key": "k1"}
    response = client.post(url, json={"label": "b", "annotator": "rev"}, headers=key)
    assert response.status_code == 201, response.text
    row = response.json()
    assert row["annotation"]["labels"] == ["b"] and row["annotation"]["annotator"] == "rev"
    assert row["item"]["labels"] == ["b"] and row["item"]["label_source"] == "human"
    retry = client.post(url, json={"label": "b", "annotator": "rev"}, headers=key)
    assert retry.status_code == 200 and retry.json()["annotation"]["id"] == row["annotation"]["id"]
    # The annotation named is no longer current: no silent overwrite.
    stale = client.post(url, json={"label": "c", "annotator": "rev"})
    assert stale.status_code == 409 and stale.json()["code"] == "conflict"
    assert stale.json()["context"]["current_annotation_id"] == row["annotation"]["id"]
    item = client.get(f"{API}/projects/{pid}/items/{item_id}").json()
    assert item["labels"] == ["b"] and [a["labels"] for a in item["annotations"]] == [["a"], ["b"]]
    current_url = f"{API}/projects/{pid}/annotations/{row['annotation']['id']}/relabel"
    bad = client.post(current_url, json={"label": "zz"})
    assert bad.status_code == 422
    missing = client.post(f"{API}/projects/{pid}/annotations/999999/relabel", json={"label": "a"})
    assert missing.status_code == 404


def test_undo_restores_the_previous_label_and_relets_the_item(client):
    project = make_project(client)
    pid = project["id"]
    make_pool(client, project, n=10, labeled=1)  # item 0 imported as "a"
    imported_id, fresh_id = _item_ids(client, pid, 2)
    next_page = client.get(f"{API}/projects/{pid}/next", params={"annotator": "ann"})
    served = next_page.json()["items"][0]
    lease_id, item_id = served["lease_id"], served["item"]["id"]
    given = _annotate(client, pid, item_id, "b", annotator="ann", lease_id=lease_id)

    url = f"{API}/projects/{pid}/annotations/{given['id']}/undo"
    assert client.post(url, json={"annotator": "bob"}).status_code == 409  # not bob's label
    response = client.post(url, json={"annotator": "ann"})
    assert response.status_code == 201, response.text
    undone = response.json()
    assert undone["undone"]["id"] == given["id"]
    assert undone["annotation"]["method"] == "undo" and undone["annotation"]["labels"] == []
    assert undone["item"]["status"] == "unlabeled" and undone["item"]["labels"] is None
    lease = undone["lease"]
    assert lease["lease_id"] != lease_id
    # The annotator's next item is the undone one, under the new lease with the old "why".
    again = client.get(f"{API}/projects/{pid}/next", params={"annotator": "ann"}).json()["items"][0]
    assert again["lease_id"] == lease["lease_id"] and again["item"]["id"] == item_id
    assert again["acquisition"]["strategy"] == served["acquisition"]["strategy"]
    others = client.get(f"{API}/projects/{pid}/next", params={"annotator": "bob", "n": 9}).json()
    assert item_id not in {e["item"]["id"] for e in others["items"]}
    assert client.post(url, json={"annotator": "ann"}).status_code == 409  # undone already
    counts = client.get(f"{API}/projects/{pid}").json()["counts"]
    assert counts["labeled"] == 1
    relabeled = _annotate(client, pid, item_id, "c", annotator="ann", lease_id=lease["lease_id"])
    assert relabeled["labels"] == ["c"]
    history = client.get(f"{API}/projects/{pid}/items/{item_id}").json()["annotations"]
    steps = [(a["labels"], a["method"]) for a in history]
    assert steps == [(["b"], None), ([], "undo"), (["c"], None)]

    # Undoing a relabel of an imported item brings the imported label back.
    over = _annotate(client, pid, imported_id, "b", annotator="ann", replace=True)
    url = f"{API}/projects/{pid}/annotations/{over['id']}/undo"
    back = client.post(url, json={"annotator": "ann"})
    assert back.status_code == 201
    restored = back.json()["item"]
    assert restored["labels"] == ["a"] and restored["label_source"] == "imported"
    assert back.json()["lease"] is None
    current = _review(client, pid, source="imported")["rows"]
    assert [r["item"]["id"] for r in current] == [imported_id]
    history = client.get(f"{API}/projects/{pid}/items/{imported_id}").json()["annotations"]
    imported = next(a for a in history)
    denied = client.post(f"{API}/projects/{pid}/annotations/{imported['id']}/undo", json={})
    assert denied.status_code == 409  # only human labels
    assert fresh_id != imported_id


def test_undone_labels_leave_the_review_list(client):
    project = make_project(client)
    pid = project["id"]
    make_pool(client, project, n=5)
    ids = _item_ids(client, pid, 2)
    kept = _annotate(client, pid, ids[0], "a")
    dropped = _annotate(client, pid, ids[1], "b")
    client.post(f"{API}/projects/{pid}/annotations/{dropped['id']}/undo", json={"annotator": "ann"})
    page = _review(client, pid)
    assert [r["annotation"]["id"] for r in page["rows"]] == [kept["id"]]
    assert np.isclose(page["total"], 1)
