"""Small helpers that build projects and pools through the API (synthetic data only)."""

from typing import Any

import numpy as np
from fastapi.testclient import TestClient

# QUARRY_BOOTSTRAP_ADMIN_KEY of the apps and servers tests start themselves
BOOTSTRAP_KEY = "quarry-test-bootstrap-admin-key-0001"
AUTH = {"Authorization": f"Bearer {BOOTSTRAP_KEY}"}
API = "/api/v1"


def make_project(
    client: TestClient,
    *,
    name: str = "p",
    labels: list[str] | None = None,
    task: str = "multiclass",
    modality: str = "vector",
    **extra: Any,
) -> dict[str, Any]:
    body = {"name": name, "task": task, "labels": labels or ["a", "b", "c"], "modality": modality}
    response = client.post(f"{API}/projects", json={**body, **extra})
    assert response.status_code == 201, response.text
    return response.json()


def blob_vectors(n: int, n_classes: int = 3, dim: int = 8, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Well-separated gaussian blobs: (vectors float32 [n, dim], classes int64 [n])."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(0, 4, size=(n_classes, dim))
    classes = np.arange(n) % n_classes
    vectors = centres[classes] + rng.normal(0, 0.7, size=(n, dim))
    return vectors.astype(np.float32), classes


def make_pool(
    client: TestClient, project: dict[str, Any], n: int = 60, labeled: int = 0, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """Import ``n`` blob vectors (the first ``labeled`` with their true label)."""
    vectors, classes = blob_vectors(n, len(project["labels"]), seed=seed)
    records = []
    for i, (v, c) in enumerate(zip(vectors, classes, strict=True)):
        record: dict[str, Any] = {"external_id": f"x{i}", "vector": v.tolist(), "text": f"item {i}"}
        if i < labeled:
            record["label"] = project["labels"][c]
        records.append(record)
    response = client.post(f"{API}/projects/{project['id']}/items", json=records)
    assert response.status_code == 201, response.text
    return vectors, classes


def label_items(
    client: TestClient, project: dict[str, Any], classes: np.ndarray, n: int, annotator: str = "ann"
) -> list[int]:
    """Label ``n`` items served by /next with their true class; returns the item ids."""
    done = []
    for _ in range(n):
        response = client.get(f"{API}/projects/{project['id']}/next", params={"annotator": annotator})
        assert response.status_code == 200, response.text
        served = response.json()["items"][0]
        position = served["item"]["position"]
        label = project["labels"][int(classes[position])]
        posted = client.post(
            f"{API}/projects/{project['id']}/annotations",
            json={"item_id": served["item"]["id"], "label": label, "annotator": annotator,
                  "lease_id": served["lease_id"]},
        )
        assert posted.status_code == 201, posted.text
        done.append(served["item"]["id"])
    return done
