"""Dashboard JSON twin: labels over time, class balance, learning curve, jobs, annotator
throughput and agreement (checked against hand-computed values and scikit-learn's kappa)."""

from datetime import UTC, datetime

import numpy as np
import pytest
from sklearn.metrics import cohen_kappa_score

from app.services.dashboard import agreement, annotator_throughput, labels_over_time
from tests.factories import API, label_items, make_pool, make_project


def _dashboard(client, pid, **params):
    response = client.get(f"{API}/projects/{pid}/dashboard", params=params)
    assert response.status_code == 200, response.text
    return response.json()


def _annotate(client, pid, item_id, label, annotator, **extra):
    body = {"item_id": item_id, "label": label, "annotator": annotator, **extra}
    response = client.post(f"{API}/projects/{pid}/annotations", json=body)
    assert response.status_code == 201, response.text
    return response.json()


def _item_ids(client, pid, n):
    response = client.get(f"{API}/projects/{pid}/items", params={"limit": n})
    return [item["id"] for item in response.json()["items"]]


def test_an_empty_project_has_an_empty_dashboard(client):
    project = make_project(client)
    board = _dashboard(client, project["id"])
    assert board["counts"] == {"items": 0, "labeled": 0, "pseudo_labeled": 0, "unlabeled": 0,
                               "by_label": {"a": 0, "b": 0, "c": 0}}
    assert board["labels_over_time"]["buckets"] == []
    assert board["class_balance"] == [
        {"label": name, "human": 0, "imported": 0, "pseudo": 0} for name in ("a", "b", "c")
    ]
    assert board["learning_curve"] == [] and board["jobs"] == [] and board["annotators"] == []
    assert board["agreement"] == {"n_items": 0, "pairwise_agreement": None, "pairs": [],
                                  "by_annotator": []}
    assert board["model_disagreements"] is None


def test_counts_balance_throughput_and_agreement_through_the_api(client):
    project = make_project(client)
    pid = project["id"]
    make_pool(client, project, n=30, labeled=3)  # items 0..2 imported as a, b, c
    ids = _item_ids(client, pid, 30)
    _annotate(client, pid, ids[5], "a", "ann")
    _annotate(client, pid, ids[5], "a", "bob")  # both say a: agreement
    _annotate(client, pid, ids[6], "a", "ann")
    _annotate(client, pid, ids[6], "b", "bob", replace=True)  # bob disagrees
    _annotate(client, pid, ids[7], "c", "ann")
    undone = _annotate(client, pid, ids[8], "c", "ann")
    undo = client.post(f"{API}/projects/{pid}/annotations/{undone['id']}/undo",
                       json={"annotator": "ann", "relet": False})
    assert undo.status_code == 201, undo.text

    board = _dashboard(client, pid)
    assert board["counts"]["labeled"] == 6 and board["counts"]["items"] == 30
    balance = {row["label"]: row for row in board["class_balance"]}
    assert balance["a"] == {"label": "a", "human": 1, "imported": 1, "pseudo": 0}  # ids[0], ids[5]
    assert balance["b"] == {"label": "b", "human": 1, "imported": 1, "pseudo": 0}  # ids[1], ids[6]
    assert balance["c"] == {"label": "c", "human": 1, "imported": 1, "pseudo": 0}  # ids[2], ids[7]

    buckets = board["labels_over_time"]["buckets"]
    assert sum(b["labels"] for b in buckets) == 5  # human labels; the retracted one left out
    assert buckets[-1]["cumulative"] == 5
    assert {a["annotator"]: a["labels"] for a in board["annotators"]} == {"ann": 3, "bob": 2}
    assert [a["annotator"] for a in board["annotators"]] == ["ann", "bob"]  # most labels first

    shared = board["agreement"]
    assert shared["n_items"] == 2 and shared["pairwise_agreement"] == 0.5
    assert [(p["a"], p["b"], p["n_items"], p["agreement"]) for p in shared["pairs"]] == [
        ("ann", "bob", 2, 0.5)
    ]
    expected_kappa = cohen_kappa_score(["a", "a"], ["a", "b"])
    assert shared["pairs"][0]["kappa"] == pytest.approx(expected_kappa)
    by_annotator = {a["annotator"]: a["agreement"] for a in shared["by_annotator"]}
    assert by_annotator == {"ann": 0.5, "bob": 0.5}
    assert board["jobs"] == [] and board["model_disagreements"] is None


def test_learning_curve_jobs_and_disagreements_after_training(client):
    project = make_project(client)
    pid = project["id"]
    _vectors, classes = make_pool(client, project, n=60)
    label_items(client, project, classes, 12)
    assert client.post(f"{API}/projects/{pid}/train", json={}).status_code == 202  # inline runner

    board = _dashboard(client, pid)
    [point] = board["learning_curve"]
    assert point["version"] == 1 and point["active"] is True and point["n_labeled"] == 12
    assert 0.0 <= point["accuracy"] <= 1.0 and 0.0 <= point["macro_f1"] <= 1.0
    [job] = board["jobs"]
    assert job["kind"] == "train" and job["status"] == "succeeded" and job["progress"] == 1.0
    assert isinstance(board["model_disagreements"], int)
    assert 0 <= board["model_disagreements"] <= 12
    review = client.get(f"{API}/projects/{pid}/annotations", params={"disagreement": "true"})
    assert review.json()["total"] == board["model_disagreements"]  # the same count as review


def test_bucket_width_is_validated(client):
    project = make_project(client)
    response = client.get(f"{API}/projects/{project['id']}/dashboard", params={"bucket_seconds": 0})
    assert response.status_code == 422
    assert response.json()["errors"][0]["loc"][-1] == "bucket_seconds"
    assert client.get(f"{API}/projects/999999/dashboard").status_code == 404


def test_labels_over_time_fills_empty_buckets_and_aligns_them():
    times = np.array([61.0, 0.0, 30.0, 200.0])  # any order
    out = labels_over_time(times, bucket_seconds=60)
    assert out["bucket_seconds"] == 60
    assert [b["labels"] for b in out["buckets"]] == [2, 1, 0, 1]
    assert [b["cumulative"] for b in out["buckets"]] == [2, 3, 3, 4]
    assert out["buckets"][0]["start"] == datetime.fromtimestamp(0, UTC).isoformat()
    assert out["buckets"][3]["start"] == datetime.fromtimestamp(180, UTC).isoformat()


def test_default_bucket_is_the_smallest_that_fits():
    ten_days = np.array([0.0, 10 * 86400.0])
    assert labels_over_time(ten_days)["bucket_seconds"] == 6 * 3600  # 1 h would need 240
    two_minutes = np.array([0.0, 120.0])
    assert labels_over_time(two_minutes)["bucket_seconds"] == 60


def test_throughput_leaves_breaks_out():
    names = ["a", "a", "a", "a", "a", "b"]
    times = np.array([0.0, 10.0, 30.0, 1000.0, 1010.0, 5.0])  # a takes a 970 s break
    rows = annotator_throughput(names, times)
    a, b = rows
    assert a["annotator"] == "a" and a["labels"] == 5
    assert a["active_seconds"] == 40.0
    assert a["labels_per_hour"] == pytest.approx(3 * 3600 / 40)
    assert a["median_seconds_per_label"] == 10.0
    assert b == {"annotator": "b", "labels": 1, "first_at": datetime.fromtimestamp(5, UTC),
                 "last_at": datetime.fromtimestamp(5, UTC), "active_seconds": 0.0,
                 "labels_per_hour": None, "median_seconds_per_label": None}


def test_agreement_uses_each_annotators_latest_label():
    labels = [
        (1, "a", ["x"]), (1, "b", ["x"]),
        (2, "a", ["x"]), (2, "b", ["y"]), (2, "a", ["y"]),  # a changes their mind: agrees now
        (3, "a", ["y"]), (3, "b", ["x"]), (3, "c", ["y"]),
        (4, "a", ["x"]),  # labeled once: not shared
    ]
    out = agreement(labels)
    assert out["n_items"] == 3
    pairs = {(p["a"], p["b"]): p for p in out["pairs"]}
    assert set(pairs) == {("a", "b"), ("a", "c"), ("b", "c")}
    ab = pairs[("a", "b")]
    assert ab["n_items"] == 3 and ab["agreement"] == pytest.approx(2 / 3)
    assert ab["kappa"] == pytest.approx(cohen_kappa_score(["x", "y", "y"], ["x", "y", "x"]))
    assert pairs[("a", "c")]["agreement"] == 1.0 and pairs[("a", "c")]["kappa"] is None  # one class
    assert pairs[("b", "c")]["agreement"] == 0.0
    assert out["pairwise_agreement"] == pytest.approx((2 + 1 + 0) / (3 + 1 + 1))
    by = {r["annotator"]: (r["n_items"], r["agreement"]) for r in out["by_annotator"]}
    assert by["a"] == (3, pytest.approx(2 / 3))  # item 3: b disagrees
    assert by["b"] == (3, pytest.approx(2 / 3))
    assert by["c"] == (1, 0.0)


def test_multilabel_sets_are_compared_as_sets():
    labels = [(1, "a", ["x", "y"]), (1, "b", ["y", "x"]), (2, "a", ["x"]), (2, "b", ["x", "y"])]
    out = agreement(labels)
    assert out["pairs"][0]["agreement"] == 0.5
