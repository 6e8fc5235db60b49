"""Pool import: formats, atomicity, 422 naming bad rows, listing with cursors."""

import io
import json

import numpy as np

from tests.factories import API, make_project


def _count(client, pid):
    return client.get(f"{API}/projects/{pid}").json()["counts"]["items"]


def test_json_import_with_prelabels(client):
    project = make_project(client)
    pid = project["id"]
    rows = [{"external_id": "a1", "vector": [1, 2, 3], "label": "a", "meta": {"k": 1}},
            {"external_id": "b1", "vector": [3, 2, 1]}]
    response = client.post(f"{API}/projects/{pid}/items", json=rows)
    assert response.status_code == 201
    assert response.json() == {"status": "imported", "imported": 2, "labeled": 1, "pool_size": 2, "job_id": None,
                               "near_duplicates": []}
    items = client.get(f"{API}/projects/{pid}/items").json()["items"]
    assert [i["position"] for i in items] == [0, 1]
    assert items[0]["labels"] == ["a"] and items[0]["label_source"] == "imported"
    assert items[0]["meta"] == {"k": 1}


def test_bad_rows_are_all_named_and_nothing_is_stored(client):
    project = make_project(client)
    pid = project["id"]
    client.post(f"{API}/projects/{pid}/items", json=[{"external_id": "taken", "vector": [0, 0, 1]}])
    rows = [
        {"external_id": "ok", "vector": [1, 1, 1]},
        {"external_id": "taken", "vector": [1, 1, 1]},
        {"vector": [1, 1]},
        {"vector": [1, 1, 1], "label": "zebra"},
        {"text": "no vector"},
    ]
    response = client.post(f"{API}/projects/{pid}/items", json=rows)
    assert response.status_code == 422
    body = response.json()
    assert body["code"] == "invalid_rows"
    bad = {(r["row"], r["field"]) for r in body["context"]["rows"]}
    assert bad == {(2, "external_id"), (3, "vector"), (4, "label"), (5, "vector")}
    assert _count(client, pid) == 1


def test_nan_vector_rejected(client):
    project = make_project(client)
    response = client.post(
        f"{API}/projects/{project['id']}/items",
        content=b'[{"vector": [1, NaN, 2]}]',
        headers={"content-type": "application/json"},
    )
    assert response.status_code == 422
    assert _count(client, project["id"]) == 0


def test_csv_upload_with_label_column_and_meta(client):
    project = make_project(client, modality="text", labels=["ham", "spam"], task="binary")
    csv_bytes = b"text,label,source\nhello there,ham,sms\nWIN a prize now,spam,sms\n"
    response = client.post(
        f"{API}/projects/{project['id']}/items",
        files={"file": ("msgs.csv", csv_bytes, "text/csv")},
    )
    assert response.status_code == 201, response.text
    assert response.json()["labeled"] == 2
    items = client.get(f"{API}/projects/{project['id']}/items").json()["items"]
    assert items[1]["text"] == "WIN a prize now" and items[1]["meta"] == {"source": "sms"}
    hidden = client.post(
        f"{API}/projects/{project['id']}/items",
        params={"ignore_labels": "true"},
        files={"file": ("more.csv", b"text,label\nsee you,ham\n", "text/csv")},
    )
    assert hidden.json()["labeled"] == 0


def test_jsonl_and_npy_uploads(client):
    project = make_project(client)
    pid = project["id"]
    jsonl = b'{"vector": [1, 0, 0]}\n{"vector": [0, 1, 0], "label": "b"}\n'
    assert client.post(f"{API}/projects/{pid}/items", files={"file": ("x.jsonl", jsonl)}).status_code == 201
    bodies = ({"files": {"file": ("y.jsonl", jsonl)}}, {"json": [{"vector": [0, 0, 1], "label": "c"}]})
    for body in bodies:
        hidden = client.post(f"{API}/projects/{pid}/items", params={"ignore_labels": "1"}, **body)
        assert hidden.status_code == 201 and hidden.json()["labeled"] == 0, hidden.text
    buffer = io.BytesIO()
    np.save(buffer, np.eye(3, dtype=np.float32))
    response = client.post(f"{API}/projects/{pid}/items", files={"file": ("x.npy", buffer.getvalue())})
    assert response.status_code == 201 and response.json()["pool_size"] == 8
    wrong_dim = io.BytesIO()
    np.save(wrong_dim, np.ones((2, 4), dtype=np.float32))
    bad = client.post(f"{API}/projects/{pid}/items", files={"file": ("y.npy", wrong_dim.getvalue())})
    assert bad.status_code == 422 and _count(client, pid) == 8


def test_malformed_jsonl_names_the_line(client):
    project = make_project(client)
    data = b'{"vector": [1, 0, 0]}\n{"vector": [0, 1\n'
    response = client.post(f"{API}/projects/{project['id']}/items", files={"file": ("x.jsonl", data)})
    assert response.status_code == 422
    assert response.json()["context"]["rows"][0]["row"] == 2
    assert _count(client, project["id"]) == 0


def test_oversized_upload_is_413(client, services):
    services.settings.max_upload_bytes = 100
    project = make_project(client)
    rows = [{"vector": [1.0, 2.0, 3.0]} for _ in range(20)]
    response = client.post(f"{API}/projects/{project['id']}/items", json=rows)
    assert response.status_code == 413
    assert _count(client, project["id"]) == 0


def test_cursor_pages_cover_everything_once(client):
    project = make_project(client)
    pid = project["id"]
    client.post(f"{API}/projects/{pid}/items", json=[{"vector": [i, 0, 1]} for i in range(25)])
    seen, cursor = [], None
    while True:
        params = {"limit": 10} | ({"cursor": cursor} if cursor else {})
        page = client.get(f"{API}/projects/{pid}/items", params=params).json()
        seen += [i["id"] for i in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert len(seen) == len(set(seen)) == 25
    assert client.get(f"{API}/projects/{pid}/items", params={"cursor": "!!"}).status_code == 422


def test_large_text_import_runs_as_a_job(client):
    project = make_project(client, modality="text", labels=["x", "y"], task="binary")
    rows = [{"text": f"message number {i}"} for i in range(70)]  # inline max is 64 in tests
    response = client.post(f"{API}/projects/{project['id']}/items", json=rows)
    assert response.status_code == 202, response.text
    job = client.get(response.headers["location"].removeprefix("/api/v1").join([API, ""])).json()
    assert job["status"] == "succeeded" and job["metrics"]["imported"] == 70
    assert _count(client, project["id"]) == 70
    detail = client.get(f"{API}/projects/{project['id']}").json()
    assert detail["feature_dim"] == 384


def test_item_detail_has_history(client):
    project = make_project(client)
    pid = project["id"]
    client.post(f"{API}/projects/{pid}/items", json=[{"vector": [1, 2, 3]}])
    item = client.get(f"{API}/projects/{pid}/items").json()["items"][0]
    client.post(f"{API}/projects/{pid}/annotations", json={"item_id": item["id"], "label": "a", "annotator": "x"})
    detail = client.get(f"{API}/projects/{pid}/items/{item['id']}").json()
    assert [a["labels"] for a in detail["annotations"]] == [["a"]]
    assert detail["prediction"] is None
    assert json.loads(json.dumps(detail))["status"] == "labeled"


def test_failed_import_job_stores_nothing_and_drops_its_staged_file(client, monkeypatch):
    from app.services import pools

    def broken(*_args, **_kwargs):
        raise RuntimeError("embedder crashed")

    monkeypatch.setattr(pools, "embed_records", broken)
    project = make_project(client, modality="text", labels=["x", "y"], task="binary")
    rows = [{"text": f"message number {i}"} for i in range(70)]  # a job: inline max is 64
    response = client.post(f"{API}/projects/{project['id']}/items", json=rows)
    assert response.status_code == 202, response.text
    job = client.get(response.headers["location"].removeprefix("/api/v1").join([API, ""])).json()
    assert job["status"] == "failed" and "embedder crashed" in job["error"]
    assert _count(client, project["id"]) == 0
    store = client.app.state.services.store
    assert not store.staging_path(project["id"], f"{job['id']}.jsonl").exists()
