"""The whole loop through the API on a synthetic vector pool: import, next, label, train,
pseudo-labels, query, mine, export."""

import csv
import io
import json

import numpy as np

from tests.factories import API, label_items, make_pool, make_project


def _train(client, pid, **body):
    response = client.post(f"{API}/projects/{pid}/train", json=body)
    assert response.status_code == 202, response.text
    job = client.get(f"{API}/jobs/{response.json()['id']}").json()
    return response, job


def test_full_loop(client):
    project = make_project(client)
    pid = project["id"]
    _vectors, classes = make_pool(client, project, n=120)
    label_items(client, project, classes, 15)

    response, job = _train(client, pid, semi_supervised={"method": "self_training", "threshold": 0.9})
    assert response.headers["location"] == f"/api/v1/jobs/{job['id']}"
    assert job["status"] == "succeeded", job
    assert job["progress"] == 1.0 and job["metrics"]["version"] == 1
    assert job["metrics"]["n_pseudo"] > 0

    read = client.get(f"{API}/projects/{pid}").json()
    assert read["active_model"]["version"] == 1
    assert read["counts"]["labeled"] == 15
    assert read["counts"]["pseudo_labeled"] == job["metrics"]["n_pseudo"]

    pseudo = client.get(f"{API}/projects/{pid}/items", params={"status": "pseudo", "limit": 1000})
    items = pseudo.json()["items"]
    assert items and all(i["label_source"] == "pseudo" and i["label_confidence"] >= 0.9 for i in items)
    correct = np.mean([i["labels"][0] == project["labels"][classes[i["position"]]] for i in items])
    assert correct > 0.9  # separable blobs: pseudo-labels are right

    query = client.post(f"{API}/projects/{pid}/queries", json={"strategy": "margin", "batch_size": 10, "seed": 1})
    assert query.status_code == 201, query.text
    body = query.json()
    assert body["model_version"] == 1 and len(body["items"]) == 10
    scores = [i["score"] for i in body["items"]]
    assert scores == sorted(scores, reverse=True)
    labeled_ids = {i["id"] for i in client.get(f"{API}/projects/{pid}/items", params={"status": "labeled"}).json()["items"]}
    assert not labeled_ids & {i["item_id"] for i in body["items"]}
    assert client.get(f"{API}/projects/{pid}/queries/{body['id']}").json()["items"] == body["items"]

    anchor = next(iter(labeled_ids))
    mined = client.post(f"{API}/projects/{pid}/negatives/mine", json={"anchors": {"item_ids": [anchor]}, "k": 5})
    assert mined.status_code == 201, mined.text
    triplets = mined.json()["triplets"]
    assert len(triplets) == 5
    anchor_label = client.get(f"{API}/projects/{pid}/items/{anchor}").json()["labels"]
    for t in triplets:
        negative = client.get(f"{API}/projects/{pid}/items/{t['negative_id']}").json()
        assert not (negative["label_source"] == "human" and negative["labels"] == anchor_label)
    sims = [t["anchor_negative_score"] for t in triplets]
    assert sims == sorted(sims, reverse=True)

    exported = client.get(f"{API}/projects/{pid}/export", params={"format": "jsonl"})
    rows = [json.loads(line) for line in exported.text.splitlines()]
    assert len(rows) == 15 and {r["source"] for r in rows} == {"human"}
    both = client.get(f"{API}/projects/{pid}/export", params={"format": "csv", "include": "all"})
    assert len(list(csv.DictReader(io.StringIO(both.text)))) == 15 + job["metrics"]["n_pseudo"]
    neg = client.get(f"{API}/projects/{pid}/negatives/export", params={"format": "jsonl"})
    assert {"anchor", "positive", "negative"} <= set(json.loads(neg.text.splitlines()[0]))


def test_human_labels_are_never_replaced_by_pseudo_labels(client):
    project = make_project(client)
    pid = project["id"]
    _vectors, classes = make_pool(client, project, n=90, labeled=12)
    # a deliberately "wrong" human label must survive training
    first = client.get(f"{API}/projects/{pid}/items", params={"status": "unlabeled", "limit": 1}).json()["items"][0]
    wrong = project["labels"][(classes[first["position"]] + 1) % 3]
    assert client.post(f"{API}/projects/{pid}/annotations", json={"item_id": first["id"], "label": wrong}).status_code == 201
    _, job = _train(client, pid, semi_supervised={"method": "self_training", "threshold": 0.5})
    assert job["status"] == "succeeded"
    item = client.get(f"{API}/projects/{pid}/items/{first['id']}").json()
    assert item["labels"] == [wrong] and item["label_source"] == "human"
    assert [a["source"] for a in item["annotations"]] == ["human"]


def test_second_training_replaces_pseudo_labels_and_rollback(client):
    project = make_project(client)
    pid = project["id"]
    make_pool(client, project, n=60, labeled=12)
    _, first = _train(client, pid)
    _, second = _train(client, pid, semi_supervised={"method": "none"})
    assert second["status"] == "succeeded" and second["metrics"]["n_pseudo"] == 0
    assert client.get(f"{API}/projects/{pid}").json()["counts"]["pseudo_labeled"] == 0
    models = client.get(f"{API}/projects/{pid}/models").json()
    assert [m["version"] for m in models] == [2, 1] and models[0]["active"]
    rolled = client.post(f"{API}/projects/{pid}/models/1/activate")
    assert rolled.status_code == 200 and rolled.json()["active"]
    assert client.get(f"{API}/projects/{pid}").json()["active_model"]["version"] == 1


def test_train_needs_two_classes(client):
    project = make_project(client)
    pid = project["id"]
    make_pool(client, project, n=10)
    item = client.get(f"{API}/projects/{pid}/items").json()["items"][0]
    client.post(f"{API}/projects/{pid}/annotations", json={"item_id": item["id"], "label": "a"})
    response = client.post(f"{API}/projects/{pid}/train", json={})
    assert response.status_code == 409
    assert "2 classes" in response.json()["detail"]


def test_train_idempotency_key_starts_one_job(client):
    project = make_project(client)
    make_pool(client, project, n=30, labeled=9)
    headers = {"Idempotency-Key": "nightly-1"}
    a = client.post(f"{API}/projects/{project['id']}/train", json={}, headers=headers)
    b = client.post(f"{API}/projects/{project['id']}/train", json={}, headers=headers)
    assert a.json()["id"] == b.json()["id"]
    assert len(client.get(f"{API}/projects/{project['id']}/jobs").json()) == 1


def test_predict_items_and_vectors(client):
    project = make_project(client)
    pid = project["id"]
    vectors, classes = make_pool(client, project, n=60, labeled=15)
    assert client.post(f"{API}/projects/{pid}/predict", json={"vectors": [[0.0] * 8]}).status_code == 409
    _train(client, pid)
    ids = [i["id"] for i in client.get(f"{API}/projects/{pid}/items", params={"limit": 5}).json()["items"]]
    by_item = client.post(f"{API}/projects/{pid}/predict", json={"item_ids": ids}).json()
    assert [p["item_id"] for p in by_item["predictions"]] == ids
    by_vector = client.post(f"{API}/projects/{pid}/predict", json={"vectors": vectors[:5].tolist()}).json()
    for a, b in zip(by_item["predictions"], by_vector["predictions"], strict=True):
        assert a["label"] == b["label"]
        assert abs(a["confidence"] - b["confidence"]) < 1e-4
    wrong_dim = client.post(f"{API}/projects/{pid}/predict", json={"vectors": [[1.0, 2.0]]})
    assert wrong_dim.status_code == 422 and wrong_dim.json()["errors"][0]["loc"] == ["vectors"]


def test_query_errors(client):
    project = make_project(client)
    pid = project["id"]
    make_pool(client, project, n=20)
    unknown = client.post(f"{API}/projects/{pid}/queries", json={"strategy": "nope", "batch_size": 3})
    assert unknown.status_code == 422 and "margin" in unknown.json()["detail"]
    no_model = client.post(f"{API}/projects/{pid}/queries", json={"strategy": "margin", "batch_size": 3})
    assert no_model.status_code == 409 and no_model.json()["code"] == "model_not_ready"
    too_many = client.post(f"{API}/projects/{pid}/queries", json={"strategy": "random", "batch_size": 21})
    assert too_many.status_code == 409 and too_many.json()["code"] == "pool_exhausted"
    bad_params = client.post(f"{API}/projects/{pid}/queries", json={"strategy": "random", "params": {"x": 1}})
    assert bad_params.status_code == 422


def test_strategies_catalogue(client):
    response = client.get(f"{API}/strategies")
    names = {s["name"] for s in response.json()}
    assert {"random", "margin", "entropy", "least_confidence", "alipy_margin", "typical"} <= names
    assert all(s["source"] and s["family"] for s in response.json())
