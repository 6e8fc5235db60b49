"""Checkpoints: metrics on human labels, calibrated probs, the activation policy, rollback, and
jobs that fail or are cancelled mid-way leaving the active model and the labels as they were."""

import json

import numpy as np
import pytest
from sqlalchemy import select

import app.jobs.retrain as retrain
from app.models import Item, Job
from app.sampling.splits import hashed_holdout
from tests.factories import API, make_pool, make_project


@pytest.fixture
def settings(settings):  # type: ignore[no-untyped-def]
    """A hold-out from 5 items on, so small synthetic pools exercise the hold-out path."""
    return settings.model_copy(update={"validation_min_holdout": 5})


def _train(client, pid, **body):
    response = client.post(f"{API}/projects/{pid}/train", json=body)
    assert response.status_code == 202, response.text
    return client.get(f"{API}/jobs/{response.json()['id']}").json()


def _state(client, pid):
    project = client.get(f"{API}/projects/{pid}").json()
    items = client.get(f"{API}/projects/{pid}/items", params={"limit": 1000}).json()["items"]
    return (
        (project["active_model"] or {}).get("version"),
        {i["id"]: (i["labels"], i["label_source"]) for i in items},
        [m["version"] for m in client.get(f"{API}/projects/{pid}/models").json()],
    )


def test_holdout_metrics_and_calibrated_probs(client):
    project = make_project(client)
    pid = project["id"]
    make_pool(client, project, n=150, labeled=100)
    job = _train(client, pid, semi_supervised={"method": "self_training", "threshold": 0.9})
    assert job["status"] == "succeeded", job
    m = job["metrics"]
    assert m["validation"] == "holdout" and m["cv_folds"] == 0
    items = client.get(f"{API}/projects/{pid}/items", params={"limit": 1000}).json()["items"]
    ids = np.array([i["id"] for i in items])
    held = set(ids[hashed_holdout(ids, fraction=0.2)].tolist())
    labeled_held = [i for i in items if i["id"] in held and i["label_source"] == "imported"]
    assert m["n_validation"] == len(labeled_held) == m["n_human_validation"]
    assert m["n_human"] == 100 - len(labeled_held)
    assert set(m["per_class_f1"]) == {"a", "b", "c"} and 0 <= m["ece"] <= 1
    assert m["temperature"] > 0 and "ece_uncalibrated" in m and m["split"]["fraction"] == 0.2
    assert (
        m["label_counts"]["human"] == m["n_human"] and m["label_counts"]["pseudo"] == m["n_pseudo"]
    )
    assert m["activation"]["activated"] and m["activation"]["reason"] == "no_active_model"
    # held-out items train nothing: none of them carries a pseudo-label
    pseudo = [i for i in items if i["label_source"] == "pseudo"]
    assert pseudo and not {i["id"] for i in pseudo} & held
    model = client.get(f"{API}/projects/{pid}/models").json()[0]
    assert model["metrics"]["temperature"] == m["temperature"] and model["activation"]["activated"]
    assert model["pseudo_confirmation"]["routed"] == m["n_routed_for_confirmation"]


def test_activation_policy_never_then_manual_activation_swaps_pseudo_labels(client):
    project = make_project(client)
    pid = project["id"]
    make_pool(client, project, n=150, labeled=100)
    first = _train(client, pid, semi_supervised={"method": "self_training", "threshold": 0.9})
    before = _state(client, pid)
    kept = _train(client, pid, semi_supervised={"method": "none"}, activate="never")
    assert kept["status"] == "succeeded"
    assert kept["metrics"]["activation"] == {
        **kept["metrics"]["activation"],
        "activated": False,
        "reason": "policy_never",
    }
    after = _state(client, pid)
    assert after[0] == before[0] == 1 and after[1] == before[1] and after[2] == [2, 1]
    # rolling forward to v2 (no pseudo-labels) clears them; back to v1 restores them
    assert client.post(f"{API}/projects/{pid}/models/2/activate").json()["active"]
    assert client.get(f"{API}/projects/{pid}").json()["counts"]["pseudo_labeled"] == 0
    assert client.post(f"{API}/projects/{pid}/models/1/activate").status_code == 200
    assert _state(client, pid)[1] == before[1]
    assert (
        client.get(f"{API}/projects/{pid}").json()["counts"]["pseudo_labeled"]
        == first["metrics"]["n_pseudo"]
    )
    missing = client.post(f"{API}/projects/{pid}/models/9/activate")
    assert missing.status_code == 404 and missing.json()["code"] == "not_found"


def test_if_better_compares_on_the_same_holdout(client):
    project = make_project(client)
    pid = project["id"]
    make_pool(client, project, n=150, labeled=100)
    _train(client, pid)
    second = _train(client, pid, seed=3)
    decision = second["metrics"]["activation"]
    assert (
        decision["policy"] == "if_better"
        and decision["compared_on"] == second["metrics"]["n_validation"] > 0
    )
    assert decision["reason"] in {"not_worse", "worse"}
    assert decision["activated"] == (decision["score"] >= decision["active_score"])
    bad = client.post(f"{API}/projects/{pid}/train", json={"activate": "sometimes"})
    assert bad.status_code == 422 and bad.json()["errors"][0]["loc"][-1] == "activate"


@pytest.mark.parametrize("where", ["before_commit", "inside_commit", "cancelled"])
def test_failed_or_cancelled_job_leaves_everything_as_it_was(client, services, monkeypatch, where):
    project = make_project(client)
    pid = project["id"]
    make_pool(client, project, n=150, labeled=100)
    _train(client, pid, semi_supervised={"method": "self_training", "threshold": 0.9})
    before = _state(client, pid)
    checkpoints = services.store.project_dir(pid) / "checkpoints"
    dirs_before = sorted(p.name for p in checkpoints.iterdir())
    original_save = retrain.save_checkpoint

    def save_then_fail(*args, **kwargs):
        if where == "before_commit":
            raise RuntimeError("disk on fire")
        path = original_save(*args, **kwargs)
        if where == "cancelled":
            with services.sessionmaker() as session, session.begin():
                job = session.scalars(
                    select(Job).where(Job.project_id == pid).order_by(Job.id.desc())
                ).first()
                job.cancel_requested = True
        return path

    def route_then_fail(*args, **kwargs):  # raises inside the final transaction
        raise RuntimeError("database hiccup")

    monkeypatch.setattr(retrain, "save_checkpoint", save_then_fail)
    if where == "inside_commit":
        monkeypatch.setattr(retrain.pseudo_review, "route_for_confirmation", route_then_fail)
    job = _train(client, pid, semi_supervised={"method": "none"}, activate="always")
    assert job["status"] == ("cancelled" if where == "cancelled" else "failed"), job
    assert _state(client, pid) == before
    assert sorted(p.name for p in checkpoints.iterdir()) == dirs_before  # no orphan checkpoint
    with services.sessionmaker() as session:
        statuses = {
            s for (s,) in session.execute(select(Item.status).where(Item.project_id == pid))
        }
    assert "pseudo" in statuses


def test_export_include_filters_pseudo_labels(client):
    project = make_project(client)
    pid = project["id"]
    make_pool(client, project, n=150, labeled=100)
    job = _train(client, pid, semi_supervised={"method": "self_training", "threshold": 0.9})
    n_pseudo = job["metrics"]["n_pseudo"]
    assert n_pseudo > 0

    def rows(include):
        text = client.get(
            f"{API}/projects/{pid}/export", params={"format": "jsonl", "include": include}
        ).text
        return [json.loads(line) for line in text.splitlines()]

    human, pseudo, both = rows("human"), rows("pseudo"), rows("all")
    assert len(human) == 100 and {r["source"] for r in human} == {"imported"}
    assert len(pseudo) == n_pseudo and {r["source"] for r in pseudo} == {"pseudo"}
    assert all(r["confidence"] >= 0.9 for r in pseudo)
    active = client.get(f"{API}/projects/{pid}").json()["active_model"]["checkpoint_id"]
    assert {(r["method"], r["checkpoint_id"]) for r in pseudo} == {
        (job["metrics"]["pseudo_method"], active)
    }
    assert {(r["method"], r["checkpoint_id"]) for r in human} == {(None, None)}
    assert len(both) == 100 + n_pseudo
    bad = client.get(f"{API}/projects/{pid}/export", params={"include": "some"})
    assert bad.status_code == 422 and bad.json()["errors"][0]["loc"][-1] == "include"
