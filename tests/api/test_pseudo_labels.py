"""Pseudo-labels routed to annotators: leases, accept/reject verdicts through the labeling
service (never overwriting a human label), and the confirmed precision per checkpoint."""

import pytest

from tests.factories import API, make_pool, make_project


@pytest.fixture
def trained(client):
    """A project with pseudo-labels, every one of them routed for confirmation."""
    project = make_project(client)
    pid = project["id"]
    make_pool(client, project, n=90, labeled=15)
    response = client.post(
        f"{API}/projects/{pid}/train",
        json={
            "semi_supervised": {"method": "self_training", "threshold": 0.8},
            "confirm_share": 1.0,
        },
    )
    job = client.get(f"{API}/jobs/{response.json()['id']}").json()
    assert job["status"] == "succeeded" and job["metrics"]["n_pseudo"] > 3, job
    assert job["metrics"]["n_routed_for_confirmation"] == job["metrics"]["n_pseudo"]
    return project, job


def _next(client, pid, annotator, n=1):
    return client.get(
        f"{API}/projects/{pid}/pseudo-labels/verify/next", params={"annotator": annotator, "n": n}
    )


def _verdict(client, pid, review_id, **body):
    return client.post(f"{API}/projects/{pid}/pseudo-labels/{review_id}/verdict", json=body)


def test_leases_are_exclusive_and_reissued_to_the_holder(client, trained):
    project, job = trained
    pid = project["id"]
    first = _next(client, pid, "ann", n=2).json()["items"]
    assert len(first) == 2
    task = first[0]
    assert task["model_version"] == 1 and task["method"] == "self_training"
    assert task["item"]["label_source"] == "pseudo" and task["labels"] == task["item"]["labels"]
    assert task["confidence"] >= 0.8 and task["question"].startswith("Is this a")
    again = _next(client, pid, "ann", n=2).json()["items"]
    assert [t["review_id"] for t in again] == [t["review_id"] for t in first]
    other = _next(client, pid, "bob", n=100).json()["items"]
    assert not {t["review_id"] for t in other} & {t["review_id"] for t in first}
    assert len(other) == job["metrics"]["n_pseudo"] - 2
    held = _verdict(client, pid, task["review_id"], verdict="accept", annotator="bob")
    assert held.status_code == 409 and held.json()["code"] == "conflict"
    assert _next(client, pid, "carol").status_code == 409  # everything is leased


def test_accept_makes_a_human_label_and_reject_withdraws_the_pseudo_label(client, trained):
    project, _ = trained
    pid = project["id"]
    a, b, c = _next(client, pid, "ann", n=3).json()["items"]
    accepted = _verdict(client, pid, a["review_id"], verdict="accept", annotator="ann")
    assert accepted.status_code == 201, accepted.text
    body = accepted.json()
    assert body["verdict"] == "accept" and body["annotation_id"] is not None
    item = client.get(f"{API}/projects/{pid}/items/{a['item']['item_id']}").json()
    assert item["label_source"] == "human" and item["labels"] == a["labels"]
    assert [x["source"] for x in item["annotations"]][-1] == "human"
    assert {x["source"] for x in item["annotations"]} == {"pseudo", "human"}  # history kept
    # the same verdict again is a no-op; a different one is a conflict
    assert _verdict(client, pid, a["review_id"], verdict="accept", annotator="ann").json() == body
    assert (
        _verdict(client, pid, a["review_id"], verdict="reject", annotator="ann").status_code == 409
    )

    rejected = _verdict(client, pid, b["review_id"], verdict="reject", annotator="ann")
    assert rejected.status_code == 201 and rejected.json()["annotation_id"] is None
    item_b = client.get(f"{API}/projects/{pid}/items/{b['item']['item_id']}").json()
    assert item_b["label_source"] is None and item_b["labels"] is None  # withdrawn, not relabeled

    other = next(label for label in project["labels"] if [label] != c["labels"])
    same = _verdict(
        client, pid, c["review_id"], verdict="reject", annotator="ann", label=c["labels"][0]
    )
    assert same.status_code == 422 and same.json()["errors"][0]["loc"][-1] == "label"
    corrected = _verdict(
        client, pid, c["review_id"], verdict="reject", annotator="ann", label=other
    )
    assert corrected.status_code == 201 and corrected.json()["corrected_label"] == other
    item_c = client.get(f"{API}/projects/{pid}/items/{c['item']['item_id']}").json()
    assert item_c["labels"] == [other] and item_c["label_source"] == "human"

    report = client.get(f"{API}/projects/{pid}/pseudo-labels/precision").json()["checkpoints"][0]
    assert (report["accepted"], report["rejected"]) == (1, 2)
    assert report["precision"] == pytest.approx(1 / 3)
    assert 0 <= report["precision_low"] < 1 / 3 < report["precision_high"] <= 1
    model = client.get(f"{API}/projects/{pid}/models").json()[0]
    assert model["pseudo_confirmation"]["precision"] == pytest.approx(1 / 3)
    # pseudo exports no longer hold the accepted or rejected items
    pseudo_ids = {
        r["id"]
        for r in client.get(
            f"{API}/projects/{pid}/items", params={"status": "pseudo", "limit": 500}
        ).json()["items"]
    }
    assert not pseudo_ids & {a["item"]["item_id"], b["item"]["item_id"], c["item"]["item_id"]}


def test_accept_never_overwrites_a_human_label(client, trained):
    project, _ = trained
    pid = project["id"]
    tasks = _next(client, pid, "ann", n=2).json()["items"]
    task = tasks[0]
    other = next(label for label in project["labels"] if [label] != task["labels"])
    posted = client.post(
        f"{API}/projects/{pid}/annotations",
        json={"item_id": task["item"]["item_id"], "label": other},
    )
    assert posted.status_code == 201
    conflict = _verdict(client, pid, task["review_id"], verdict="accept", annotator="ann")
    assert conflict.status_code == 409 and conflict.json()["code"] == "label_conflict"
    item = client.get(f"{API}/projects/{pid}/items/{task['item']['item_id']}").json()
    assert item["labels"] == [other] and item["label_source"] == "human"
    # an item a human labeled meanwhile is no longer served for confirmation
    served = {t["review_id"] for t in _next(client, pid, "ann", n=100).json()["items"]}
    assert task["review_id"] not in served and tasks[1]["review_id"] in served


def test_retraining_never_puts_back_a_rejected_pseudo_label(client, trained):
    project, _ = trained
    pid = project["id"]
    task = _next(client, pid, "ann").json()["items"][0]
    assert (
        _verdict(client, pid, task["review_id"], verdict="reject", annotator="ann").status_code
        == 201
    )
    assert client.post(f"{API}/projects/{pid}/models/1/activate").status_code == 200
    item = client.get(f"{API}/projects/{pid}/items/{task['item']['item_id']}").json()
    assert item["label_source"] is None


def test_errors_and_empty_queue(client):
    project = make_project(client)
    pid = project["id"]
    make_pool(client, project, n=30)
    empty = _next(client, pid, "ann")
    assert empty.status_code == 409 and empty.json()["code"] == "pool_exhausted"
    missing = _verdict(client, pid, 999, verdict="accept", annotator="ann")
    assert missing.status_code == 404
    bad = _verdict(client, pid, 1, verdict="maybe", annotator="ann")
    assert bad.status_code == 422 and bad.json()["errors"][0]["loc"][-1] == "verdict"
    assert client.get(f"{API}/projects/{pid}/pseudo-labels/precision").json() == {"checkpoints": []}


def test_share_routes_a_sample(client):
    project = make_project(client)
    pid = project["id"]
    make_pool(client, project, n=90, labeled=15)
    response = client.post(
        f"{API}/projects/{pid}/train",
        json={
            "semi_supervised": {"method": "self_training", "threshold": 0.8},
            "confirm_share": 0.1,
        },
    )
    job = client.get(f"{API}/jobs/{response.json()['id']}").json()
    n_pseudo = job["metrics"]["n_pseudo"]
    assert job["metrics"]["n_routed_for_confirmation"] == -(-n_pseudo // 10)  # ceil(0.1 * n)
    assert client.post(f"{API}/projects/{pid}/train", json={"confirm_share": 2}).status_code == 422
