"""The foundation's acceptance flow on real data, through the HTTP API alone: create a project,
import ../shared/data/sms_spam/all.csv without labels, label 20 items from /next, train (the job
succeeds and pseudo-labels appear with source=pseudo), query a margin batch of 10, mine
negatives for a labeled item, export labels."""

import csv
import json

import pytest

from tests.factories import API


@pytest.mark.slow
def test_sms_spam_flow(client, shared_data):
    path = shared_data / "sms_spam" / "all.csv"
    with path.open(encoding="utf-8", newline="") as fh:
        truth = [row["label"] for row in csv.DictReader(fh)]

    project = client.post(f"{API}/projects", json={
        "name": "sms", "task": "binary", "labels": ["ham", "spam"], "modality": "text"}).json()
    pid = project["id"]
    with path.open("rb") as fh:
        imported = client.post(f"{API}/projects/{pid}/items", params={"ignore_labels": "true"},
                               files={"file": ("all.csv", fh, "text/csv")})
    assert imported.status_code == 202, imported.text  # large text import runs as a job
    job = client.get(f"{API}/jobs/{imported.json()['job_id']}").json()
    assert job["status"] == "succeeded", job
    counts = client.get(f"{API}/projects/{pid}").json()["counts"]
    assert counts["items"] == len(truth) == 5574 and counts["labeled"] == 0

    served_ids = []
    for _ in range(20):
        served = client.get(f"{API}/projects/{pid}/next", params={"annotator": "ann"}).json()["items"][0]
        label = truth[served["item"]["position"]]
        posted = client.post(f"{API}/projects/{pid}/annotations", json={
            "item_id": served["item"]["id"], "label": label, "annotator": "ann",
            "lease_id": served["lease_id"]})
        assert posted.status_code == 201, posted.text
        served_ids.append(served["item"]["id"])
    assert len(set(served_ids)) == 20
    counts = client.get(f"{API}/projects/{pid}").json()["counts"]
    assert counts["labeled"] == 20 and counts["by_label"]["spam"] >= 1

    started = client.post(f"{API}/projects/{pid}/train", json={
        "semi_supervised": {"method": "self_training", "threshold": 0.95}})
    assert started.status_code == 202
    job = client.get(f"{API}/jobs/{started.json()['id']}").json()
    assert job["status"] == "succeeded", job
    pseudo = client.get(f"{API}/projects/{pid}/items", params={"status": "pseudo", "limit": 1000}).json()["items"]
    assert pseudo and {p["label_source"] for p in pseudo} == {"pseudo"}
    precision = sum(truth[p["position"]] == p["labels"][0] for p in pseudo) / len(pseudo)
    assert precision > 0.9

    query = client.post(f"{API}/projects/{pid}/queries", json={"strategy": "margin", "batch_size": 10})
    assert query.status_code == 201 and len(query.json()["items"]) == 10
    assert not set(served_ids) & {i["item_id"] for i in query.json()["items"]}

    mined = client.post(f"{API}/projects/{pid}/negatives/mine",
                        json={"anchors": {"item_ids": [served_ids[0]]}, "k": 5})
    assert mined.status_code == 201 and len(mined.json()["triplets"]) == 5

    exported = client.get(f"{API}/projects/{pid}/export", params={"format": "jsonl"})
    rows = [json.loads(line) for line in exported.text.splitlines()]
    assert len(rows) == 20 and all(r["label"] == truth[int(r["external_id"].split("-")[1])] for r in rows)
