"""The project's vector index: kind by size, incremental import, search, near-duplicates,
rebuild after a retrain."""

from pathlib import Path

import numpy as np
import pytest

from app.config import Settings
from tests.factories import API, blob_vectors, make_pool, make_project


@pytest.fixture
def settings(tmp_path: Path, database_url: str) -> Settings:
    return Settings(
        data_dir=tmp_path / "data", database_url=database_url, job_runner="inline",
        import_inline_max=64, index_exact_below=100, index_approximate="ivf",
        near_duplicate_similarity=0.9999,
    )


def _records(vectors: np.ndarray, prefix: str) -> list[dict]:
    return [{"external_id": f"{prefix}{i}", "vector": v.tolist()} for i, v in enumerate(vectors)]


def test_small_pool_gets_an_exact_index(client):
    project = make_project(client)
    make_pool(client, project, n=60)
    body = client.get(f"{API}/projects/{project['id']}/index").json()
    assert body["kind"] == "flat" and body["size"] == 60 and body["dim"] == 8
    assert body["recall_at_10"] == 1.0 and body["build_seconds"] >= 0


def test_large_pool_gets_a_calibrated_ivf_index_updated_on_import(client):
    project = make_project(client)
    pid = project["id"]
    make_pool(client, project, n=300)
    first = client.get(f"{API}/projects/{pid}/index").json()
    assert first["kind"] == "ivf" and first["size"] == 300
    assert first["recall_at_10"] >= 0.95 and first["search_params"]["nprobe"] >= 1
    more, _ = blob_vectors(40, 3, seed=9)
    response = client.post(f"{API}/projects/{pid}/items", json=_records(more, "m"))
    assert response.status_code == 201, response.text
    second = client.get(f"{API}/projects/{pid}/index").json()
    assert second["size"] == 340 and second["added_since_build"] == 40
    assert second["built_at"] == first["built_at"]  # appended, not rebuilt


def test_search_by_item_and_vector(client):
    project = make_project(client)
    pid = project["id"]
    vectors, classes = make_pool(client, project, n=60)
    items = client.get(f"{API}/projects/{pid}/items", params={"limit": 100}).json()["items"]
    by_position = {i["position"]: i["id"] for i in items}
    hits = client.post(f"{API}/projects/{pid}/search", json={"item_id": by_position[0], "k": 5})
    assert hits.status_code == 200, hits.text
    results = hits.json()["results"]
    assert len(results) == 5 and by_position[0] not in {r["item_id"] for r in results}
    sims = [r["similarity"] for r in results]
    assert sims == sorted(sims, reverse=True)
    unit = vectors / np.linalg.norm(vectors, axis=1, keepdims=True)
    expected = np.argsort(-(unit[1:] @ unit[0]))[:5] + 1
    assert [r["item_id"] for r in results] == [by_position[int(p)] for p in expected]
    by_vector = client.post(
        f"{API}/projects/{pid}/search", json={"vector": vectors[3].tolist(), "k": 1}
    )
    assert by_vector.json()["results"][0]["item_id"] == by_position[3]
    bad = client.post(f"{API}/projects/{pid}/search", json={"vector": [1.0, 2.0]})
    assert bad.status_code == 422 and bad.json()["context"]["field"] == "vector"
    assert client.post(f"{API}/projects/{pid}/search", json={"text": "hi"}).status_code == 422
    assert client.post(f"{API}/projects/{pid}/search", json={"item_id": 10**9}).status_code == 404
    assert client.post(f"{API}/projects/{pid}/search", json={"k": 3}).status_code == 422


def test_near_duplicates_are_reported_and_flagged_not_rejected(client):
    project = make_project(client)
    pid = project["id"]
    vectors, _ = make_pool(client, project, n=30)
    rng = np.random.default_rng(3)
    fresh = rng.normal(size=(2, 8)).astype(np.float32) * 10
    batch = np.stack([fresh[0], vectors[7] * 2.0, fresh[1], fresh[1] * 1.5])
    response = client.post(f"{API}/projects/{pid}/items", json=_records(batch, "n"))
    assert response.status_code == 201, response.text
    body = response.json()
    assert body["imported"] == 4
    report = {d["row"]: d for d in body["near_duplicates"]}
    assert set(report) == {2, 4}
    items = client.get(f"{API}/projects/{pid}/items", params={"limit": 100}).json()["items"]
    by_position = {i["position"]: i for i in items}
    assert report[2]["item_id"] == by_position[7]["id"] and report[2]["similarity"] >= 0.9999
    assert report[4]["item_id"] == by_position[32]["id"]  # row 3 of this import
    assert report[4]["new_item_id"] == by_position[33]["id"]
    assert by_position[31]["meta"]["near_duplicate_of"]["item_id"] == by_position[7]["id"]
    assert "near_duplicate_of" not in by_position[30]["meta"]


def test_retrain_rebuilds_the_index(client):
    project = make_project(client)
    pid = project["id"]
    make_pool(client, project, n=90, labeled=30)
    more, _ = blob_vectors(20, 3, seed=4)
    client.post(f"{API}/projects/{pid}/items", json=_records(more, "r"))
    before = client.get(f"{API}/projects/{pid}/index").json()
    assert before["kind"] == "flat" and before["added_since_build"] == 20
    job = client.post(f"{API}/projects/{pid}/train", json={"epochs": 5})
    assert job.status_code == 202, job.text
    after = client.get(f"{API}/projects/{pid}/index").json()
    assert after["kind"] == "ivf" and after["size"] == 110 and after["added_since_build"] == 0
