"""Hard-negative mining controls, positive-only mining, n-tuple export, and verification of
mined negatives through the API."""

import csv
import io
import json

from tests.factories import API, make_pool, make_project


def _mine(client, pid, **body):
    response = client.post(f"{API}/projects/{pid}/negatives/mine", json=body)
    assert response.status_code == 201, response.text
    return response.json()


def _items(client, pid):
    items = client.get(f"{API}/projects/{pid}/items", params={"limit": 1000}).json()["items"]
    return {i["id"]: i for i in items}


def test_controls_are_applied_and_counted(client):
    project = make_project(client)
    pid = project["id"]
    make_pool(client, project, n=120, labeled=30)
    base = _mine(client, pid, anchors={"label": "a"}, k=5)
    assert set(base["dropped"]) >= {
        "self", "same_label", "excluded", "margin", "relative_margin", "max_similarity",
        "semi_hard", "predicted", "min_similarity", "range",
    }
    assert base["positive_only"] is False and base["enqueued"] == 0
    relative = _mine(client, pid, anchors={"label": "a"}, k=5, relative_margin=0.05)
    assert relative["dropped"]["relative_margin"] > 0
    for t in relative["triplets"]:
        assert t["anchor_negative_score"] <= t["anchor_positive_score"] * 0.95 + 1e-6
    floor = _mine(client, pid, anchors={"label": "a"}, k=5, min_similarity=0.5)
    assert all(t["anchor_negative_score"] >= 0.5 for t in floor["triplets"])
    semi = _mine(client, pid, anchors={"label": "a"}, k=3, sampling="semi-hard",
                 semi_hard_margin=0.5)
    assert semi["triplets"] and semi["dropped"]["semi_hard"] > 0
    for t in semi["triplets"]:
        assert t["anchor_positive_score"] - 0.5 <= t["anchor_negative_score"]
        assert t["anchor_negative_score"] < t["anchor_positive_score"]
    unlabeled = client.post(f"{API}/projects/{pid}/negatives/mine", json={
        "anchors": {"item_ids": [base["triplets"][0]["negative_id"]]}, "sampling": "semi-hard"})
    assert unlabeled.status_code == 422 and unlabeled.json()["context"]["field"] == "sampling"


def test_predicted_probability_filter_needs_a_model(client):
    project = make_project(client)
    pid = project["id"]
    make_pool(client, project, n=90, labeled=30)
    response = client.post(f"{API}/projects/{pid}/negatives/mine",
                           json={"anchors": {"label": "a"}, "max_predicted_probability": 0.5})
    assert response.status_code == 409 and response.json()["code"] == "model_not_ready"
    assert client.post(f"{API}/projects/{pid}/train", json={"epochs": 20}).status_code == 202
    # no margin: unlabeled items of class a are the nearest candidates; the model knows them
    loose = _mine(client, pid, anchors={"label": "a"}, k=5, max_predicted_probability=0.5)
    assert loose["dropped"]["predicted"] > 0
    items = _items(client, pid)
    for t in loose["triplets"]:  # pseudo-labels "a" (confidence >= 0.95) are all filtered out
        negative = items[t["negative_id"]]
        assert not (negative["labels"] == ["a"] and negative["label_source"] == "pseudo")


def test_positive_only_mining_draws_from_unlabeled_items(client):
    project = make_project(client, labels=["yes", "no"], task="binary")
    pid = project["id"]
    _vectors, classes = make_pool(client, project, n=80)
    items = _items(client, pid)
    by_position = {i["position"]: i["id"] for i in items.values()}
    positives = [by_position[p] for p in range(0, 80) if classes[p] == 0][:10]
    others = [by_position[p] for p in range(0, 80) if classes[p] == 1][:3]
    for item_id in positives:
        client.post(f"{API}/projects/{pid}/annotations", json={"item_id": item_id, "label": "yes"})
    auto = _mine(client, pid, anchors={"label": "yes"}, k=4)
    assert auto["positive_only"] is True and auto["params"]["positive_only"] is True
    assert {t["negative_id"] for t in auto["triplets"]}.isdisjoint(positives)
    for item_id in others:  # a second label now has labels: no longer positive-only by default
        client.post(f"{API}/projects/{pid}/annotations", json={"item_id": item_id, "label": "no"})
    plain = _mine(client, pid, anchors={"label": "yes"}, k=30)
    assert plain["positive_only"] is False
    forced = _mine(client, pid, anchors={"label": "yes"}, k=60, positive_only=True)
    assert forced["positive_only"] is True and forced["dropped"]["excluded"] > 0
    assert {t["negative_id"] for t in forced["triplets"]}.isdisjoint(set(others) | set(positives))


def test_n_tuple_output_and_export(client):
    project = make_project(client)
    pid = project["id"]
    make_pool(client, project, n=90, labeled=20)
    body = _mine(client, pid, anchors={"label": "b"}, k=3, output="n-tuple")
    assert body["tuples"] and all(len(t["negative_ids"]) == 3 for t in body["tuples"])
    exported = client.get(f"{API}/projects/{pid}/negatives/export",
                          params={"format": "csv", "run_id": body["run_id"]})
    rows = list(csv.DictReader(io.StringIO(exported.text)))
    assert len(rows) == len(body["tuples"])
    assert list(rows[0])[:5] == ["anchor", "positive", "negative_1", "negative_2", "negative_3"]
    triplets = client.get(f"{API}/projects/{pid}/negatives/export",
                          params={"run_id": body["run_id"], "output": "triplet"})
    assert len(triplets.text.splitlines()) == len(body["triplets"])
    bad = client.get(f"{API}/projects/{pid}/negatives/export", params={"output": "n-tuple"})
    assert bad.status_code == 422 and bad.json()["context"]["field"] == "run_id"


def test_verify_loop_records_verdicts_and_false_negative_rate(client):
    project = make_project(client)
    pid = project["id"]
    make_pool(client, project, n=90, labeled=20)
    run = _mine(client, pid, anchors={"label": "a"}, k=2, enqueue=True)
    assert run["enqueued"] == len(run["triplets"]) > 3

    first = client.get(f"{API}/projects/{pid}/negatives/verify/next",
                       params={"annotator": "ann", "n": 2})
    assert first.status_code == 200, first.text
    tasks = first.json()["items"]
    assert len(tasks) == 2 and tasks[0]["label"] == "a" and "not a 'a'" in tasks[0]["question"]
    again = client.get(f"{API}/projects/{pid}/negatives/verify/next",
                       params={"annotator": "ann", "n": 2}).json()["items"]
    assert [t["triplet_id"] for t in again] == [t["triplet_id"] for t in tasks]  # own leases first
    other = client.get(f"{API}/projects/{pid}/negatives/verify/next",
                       params={"annotator": "bob", "n": 2}).json()["items"]
    assert {t["triplet_id"] for t in other}.isdisjoint(t["triplet_id"] for t in tasks)
    stolen = client.post(f"{API}/projects/{pid}/negatives/{tasks[0]['triplet_id']}/verdict",
                         json={"verdict": "negative", "annotator": "bob"})
    assert stolen.status_code == 409

    fn, neg = tasks
    fn_verdict = client.post(f"{API}/projects/{pid}/negatives/{fn['triplet_id']}/verdict",
                             json={"verdict": "false_negative", "annotator": "ann"})
    assert fn_verdict.status_code == 201, fn_verdict.text
    assert fn_verdict.json()["annotation_id"] is not None
    item = client.get(f"{API}/projects/{pid}/items/{fn['negative']['item_id']}").json()
    assert item["labels"] == ["a"] and item["label_source"] == "human"
    assert item["annotations"][-1]["annotator"] == "ann"
    ok = client.post(f"{API}/projects/{pid}/negatives/{neg['triplet_id']}/verdict",
                     json={"verdict": "negative", "annotator": "ann"})
    assert ok.status_code == 201 and ok.json()["verdict"] == "negative"
    repeat = client.post(f"{API}/projects/{pid}/negatives/{neg['triplet_id']}/verdict",
                         json={"verdict": "negative", "annotator": "ann"})
    assert repeat.status_code == 201
    flip = client.post(f"{API}/projects/{pid}/negatives/{neg['triplet_id']}/verdict",
                       json={"verdict": "false_negative", "annotator": "ann"})
    assert flip.status_code == 409

    report = client.get(f"{API}/projects/{pid}/negatives/runs").json()
    entry = next(r for r in report["runs"] if r["run_id"] == run["run_id"])
    assert entry["verified"] == 2 and entry["false_negatives"] == 1
    assert entry["false_negative_rate"] == 0.5
    assert entry["queued"] == run["enqueued"] - 2
    config = next(c for c in report["configs"] if run["run_id"] in c["runs"])
    assert config["false_negative_rate"] == 0.5 and "anchors" not in config["config"]

    verified = client.get(f"{API}/projects/{pid}/negatives/export",
                          params={"verified": "true", "run_id": run["run_id"]})
    rows = [json.loads(line) for line in verified.text.splitlines()]
    assert [r["negative_id"] for r in rows] == [neg["negative"]["item_id"]]


def test_false_negative_never_overwrites_another_human_label(client):
    project = make_project(client)
    pid = project["id"]
    make_pool(client, project, n=60, labeled=15)
    run = _mine(client, pid, anchors={"label": "a"}, k=1, enqueue=True,
                exclude_same_label=True)
    task = client.get(f"{API}/projects/{pid}/negatives/verify/next",
                      params={"annotator": "ann"}).json()["items"][0]
    negative_id = task["negative"]["item_id"]
    client.post(f"{API}/projects/{pid}/annotations",
                json={"item_id": negative_id, "label": "c", "annotator": "eve", "replace": True})
    response = client.post(f"{API}/projects/{pid}/negatives/{task['triplet_id']}/verdict",
                           json={"verdict": "false_negative", "annotator": "ann"})
    assert response.status_code == 409 and response.json()["code"] == "label_conflict"
    assert client.get(f"{API}/projects/{pid}/items/{negative_id}").json()["labels"] == ["c"]
    assert run["run_id"]


def test_verify_queue_empty_and_unknown_triplet(client):
    project = make_project(client)
    pid = project["id"]
    make_pool(client, project, n=30, labeled=9)
    empty = client.get(f"{API}/projects/{pid}/negatives/verify/next", params={"annotator": "a"})
    assert empty.status_code == 409 and empty.json()["code"] == "pool_exhausted"
    missing = client.post(f"{API}/projects/{pid}/negatives/999999/verdict",
                          json={"verdict": "negative", "annotator": "a"})
    assert missing.status_code == 404
    assert client.get(f"{API}/projects/{pid}/negatives/runs").json() == {"runs": [], "configs": []}
