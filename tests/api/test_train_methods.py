"""Semi-supervised method per run (FixMatch through the job, pseudo-labels recording the method)
and per project (``train_defaults`` set by PATCH /projects/{pid})."""

from tests.factories import API, make_pool, make_project

FAST_SSL = {"method": "fixmatch", "steps": 60, "threshold": 0.9}


def test_fixmatch_run_stores_pseudo_labels_with_method_and_checkpoint(client):
    project = make_project(client, name="fixmatch")
    pid = project["id"]
    make_pool(client, project, n=90, labeled=15)
    response = client.post(f"{API}/projects/{pid}/train", json={"semi_supervised": FAST_SSL})
    assert response.status_code == 202, response.text
    job = client.get(f"{API}/jobs/{response.json()['id']}").json()
    assert job["status"] == "succeeded", job
    metrics = job["metrics"]
    assert metrics["method"] == "fixmatch" and metrics["n_pseudo"] > 0
    assert metrics["pseudo_method"] == "fixmatch"
    assert len(metrics["thresholds"]) == 3
    pseudo = client.get(
        f"{API}/projects/{pid}/items", params={"status": "pseudo", "limit": 500}
    ).json()["items"]
    assert pseudo, "the active checkpoint's pseudo-labels are applied"
    item = client.get(f"{API}/projects/{pid}/items/{pseudo[0]['id']}").json()
    notes = [a for a in item["annotations"] if a["source"] == "pseudo"]
    assert notes and notes[-1]["method"] == "fixmatch"
    assert notes[-1]["checkpoint_id"] == metrics["checkpoint_id"]
    assert 0.9 <= notes[-1]["confidence"] <= 1.0


def test_project_train_defaults_apply_when_a_run_does_not_say(client):
    project = make_project(client, name="defaults")
    pid = project["id"]
    make_pool(client, project, n=60, labeled=12)
    defaults = {"semi_supervised": {**FAST_SSL, "distribution_alignment": True}, "seed": 3}
    patched = client.patch(f"{API}/projects/{pid}", json={"train_defaults": defaults})
    assert patched.status_code == 200, patched.text
    assert patched.json()["train_defaults"] == defaults
    assert client.get(f"{API}/projects/{pid}").json()["train_defaults"] == defaults

    job = client.post(f"{API}/projects/{pid}/train").json()
    assert job["params"]["semi_supervised"]["method"] == "fixmatch"
    assert job["params"]["semi_supervised"]["distribution_alignment"] is True
    assert job["params"]["seed"] == 3
    assert client.get(f"{API}/jobs/{job['id']}").json()["metrics"]["distribution_alignment"]

    # a run's own fields win; nested objects merge key by key
    own = client.post(
        f"{API}/projects/{pid}/train",
        json={"semi_supervised": {"method": "mean_teacher"}, "seed": 1},
    ).json()
    semi = own["params"]["semi_supervised"]
    assert semi["method"] == "mean_teacher" and semi["steps"] == 60 and own["params"]["seed"] == 1

    cleared = client.patch(f"{API}/projects/{pid}", json={"train_defaults": {}})
    assert cleared.json()["train_defaults"] == {}
    plain = client.post(f"{API}/projects/{pid}/train").json()
    assert plain["params"]["semi_supervised"]["method"] == "self_training"


def test_bad_train_defaults_and_methods_are_422_naming_the_field(client):
    project = make_project(client, name="bad")
    pid = project["id"]
    bad = client.patch(
        f"{API}/projects/{pid}", json={"train_defaults": {"semi_supervised": {"method": "mixup"}}}
    )
    assert bad.status_code == 422
    assert bad.headers["content-type"].startswith("application/problem+json")
    assert "train_defaults" in bad.text and "method" in bad.text
    unknown = client.patch(f"{API}/projects/{pid}", json={"train_defaults": {"epochz": 3}})
    assert unknown.status_code == 422 and "epochz" in unknown.text
    make_pool(client, project, n=30, labeled=9)
    run = client.post(
        f"{API}/projects/{pid}/train", json={"semi_supervised": {"method": "fixmatch", "steps": 1}}
    )
    assert run.status_code == 422 and "steps" in run.text


def test_cnn_on_a_non_square_pool_is_422_naming_architecture(client):
    project = make_project(client, name="cnn-vectors")  # blob vectors of 8 features
    make_pool(client, project, n=30, labeled=9)
    run = client.post(f"{API}/projects/{project['id']}/train", json={"architecture": "cnn"})
    assert run.status_code == 422 and run.json()["context"]["field"] == "architecture"


def test_label_spreading_run_stores_spread_labels_and_is_a_project_default(client):
    project = make_project(client, name="spreading")
    pid = project["id"]
    make_pool(client, project, n=90, labeled=15)
    response = client.post(
        f"{API}/projects/{pid}/train", json={"semi_supervised": {"method": "label_spreading"}}
    )
    assert response.status_code == 202, response.text
    job = client.get(f"{API}/jobs/{response.json()['id']}").json()
    assert job["status"] == "succeeded", job
    metrics = job["metrics"]
    assert metrics["method"] == "label_spreading" and metrics["pseudo_method"] == "label_spreading"
    assert metrics["n_spread"] > 0 and metrics["n_pseudo"] > 0 and metrics["neighbors"] == 10
    assert metrics["cg_iterations"] >= 1
    pseudo = client.get(
        f"{API}/projects/{pid}/items", params={"status": "pseudo", "limit": 500}
    ).json()["items"]
    assert pseudo, "the active checkpoint's spread labels are applied"
    item = client.get(f"{API}/projects/{pid}/items/{pseudo[0]['id']}").json()
    notes = [a for a in item["annotations"] if a["source"] == "pseudo"]
    assert notes and notes[-1]["method"] == "label_spreading"
    assert notes[-1]["checkpoint_id"] == metrics["checkpoint_id"]
    assert 0.0 < notes[-1]["confidence"] <= 1.0

    defaults = {"semi_supervised": {"method": "label_spreading"}}
    assert (
        client.patch(f"{API}/projects/{pid}", json={"train_defaults": defaults}).status_code == 200
    )
    plain = client.post(f"{API}/projects/{pid}/train").json()
    assert plain["params"]["semi_supervised"]["method"] == "label_spreading"
    assert client.get(f"{API}/jobs/{plain['id']}").json()["metrics"]["method"] == "label_spreading"
