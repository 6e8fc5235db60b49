"""Projects: create, read (POST then GET at once), update, delete, and problem+json errors."""

from tests.factories import API, make_pool, make_project


def test_create_then_get_immediately(client):
    project = make_project(client, name="first")
    got = client.get(f"{API}/projects/{project['id']}")
    assert got.status_code == 200
    body = got.json()
    assert body["name"] == "first" and body["embedder"] == "vector"
    assert body["counts"] == {"items": 0, "labeled": 0, "pseudo_labeled": 0, "unlabeled": 0,
                              "by_label": {"a": 0, "b": 0, "c": 0}}
    assert body["active_model"] is None


def test_counts_follow_imports(client):
    project = make_project(client)
    make_pool(client, project, n=30, labeled=6)
    counts = client.get(f"{API}/projects/{project['id']}").json()["counts"]
    assert counts["items"] == 30 and counts["labeled"] == 6 and counts["unlabeled"] == 24
    assert sum(counts["by_label"].values()) == 6


def test_validation_error_is_problem_json_naming_the_field(client):
    response = client.post(f"{API}/projects", json={"name": "x", "task": "binary", "labels": ["a"]})
    assert response.status_code == 422
    assert response.headers["content-type"].startswith("application/problem+json")
    body = response.json()
    assert body["status"] == 422 and body["code"] == "validation_error"
    assert body["errors"] and body["title"]


def test_duplicate_name_conflicts(client):
    make_project(client, name="same")
    response = client.post(f"{API}/projects", json={"name": "same", "labels": ["a", "b"]})
    assert response.status_code == 409
    assert response.json()["context"]["field"] == "name"


def test_unknown_embedder_for_modality(client):
    response = client.post(
        f"{API}/projects", json={"name": "e", "labels": ["a", "b"], "modality": "text", "embedder": "pixels"}
    )
    assert response.status_code == 422
    assert response.json()["errors"][0]["loc"] == ["embedder"]


def test_patch_appends_labels_only(client):
    project = make_project(client)
    url = f"{API}/projects/{project['id']}"
    ok = client.patch(url, json={"labels": ["a", "b", "c", "d"]})
    assert ok.status_code == 200 and ok.json()["labels"] == ["a", "b", "c", "d"]
    reorder = client.patch(url, json={"labels": ["b", "a", "c", "d"]})
    assert reorder.status_code == 422


def test_delete_then_404(client):
    project = make_project(client)
    make_pool(client, project, n=10)
    assert client.delete(f"{API}/projects/{project['id']}").status_code == 204
    missing = client.get(f"{API}/projects/{project['id']}")
    assert missing.status_code == 404
    assert missing.json()["code"] == "not_found"
