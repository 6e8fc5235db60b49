"""Issue 3 through the API: native and ALiPy strategies after a real training job, the served
window of batch queries, on-demand re-ranking and the stopping-signal stats."""

import numpy as np
import pytest

from tests.factories import API, label_items, make_pool, make_project


@pytest.fixture
def trained(client):  # type: ignore[no-untyped-def]
    project = make_project(client)
    pid = project["id"]
    make_pool_result = make_pool(client, project, n=120)
    label_items(client, project, make_pool_result[1], 15)
    body = {"semi_supervised": {"method": "none"}}
    response = client.post(f"{API}/projects/{pid}/train", json=body)
    assert response.status_code == 202, response.text
    return project


def _query(client, pid, strategy, n=5, **params):  # type: ignore[no-untyped-def]
    return client.post(
        f"{API}/projects/{pid}/queries",
        json={"strategy": strategy, "batch_size": n, "params": params, "seed": 3},
    )


@pytest.mark.parametrize(
    "strategy",
    ["bald", "kcenter", "badge", "diverse_margin", "information_density", "weighted",
     "subsample", "alipy_qbc", "alipy_coreset", "alipy_graph_density", "alipy_random"],
)
def test_strategies_run_on_a_trained_checkpoint(client, trained, strategy) -> None:  # type: ignore[no-untyped-def]
    response = _query(client, trained["id"], strategy)
    assert response.status_code == 201, response.text
    body = response.json()
    assert len({i["item_id"] for i in body["items"]}) == 5
    assert "n_recently_served" in body["info"]


def test_bald_uses_mc_samples_stored_with_the_checkpoint(client, trained) -> None:  # type: ignore[no-untyped-def]
    body = _query(client, trained["id"], "bald").json()
    assert body["info"]["mc_samples"] == 10


def test_binary_only_strategy_is_refused_with_the_reason(client, trained) -> None:  # type: ignore[no-untyped-def]
    response = _query(client, trained["id"], "alipy_quire")
    assert response.status_code == 422
    assert response.json()["code"] == "unsupported_task" and "binary" in response.json()["detail"]


def test_lal_is_listed_unavailable(client) -> None:  # type: ignore[no-untyped-def]
    listed = {s["name"]: s for s in client.get(f"{API}/strategies").json()}
    assert listed["alipy_lal"]["available"] is False and listed["alipy_lal"]["reason"]
    assert listed["kcenter"]["available"] is True
    response = client.post(
        f"{API}/projects/{make_project(client)['id']}/queries",
        json={"strategy": "alipy_lal", "batch_size": 1},
    )
    assert response.status_code == 422 and response.json()["code"] == "strategy_unavailable"


def test_candidate_cap_is_reported(client, trained) -> None:  # type: ignore[no-untyped-def]
    body = _query(client, trained["id"], "alipy_graph_density", candidates=40).json()
    assert body["info"]["candidates"] == 40 and body["info"]["prefilter"] == "margin"


def test_batch_queries_skip_items_recently_served_by_next(client, trained) -> None:  # type: ignore[no-untyped-def]
    pid = trained["id"]
    served = client.get(f"{API}/projects/{pid}/next", params={"annotator": "a", "n": 5}).json()
    served_ids = {i["item"]["id"] for i in served["items"]}
    for item in served["items"]:  # give them back: no longer leased, but recently served
        client.post(f"{API}/projects/{pid}/leases/{item['lease_id']}/skip")
    body = _query(client, pid, "margin", n=100).json()
    assert not served_ids & {i["item_id"] for i in body["items"]}
    assert body["info"]["n_recently_served"] == 5


def test_rerank_and_stats(client, trained) -> None:  # type: ignore[no-untyped-def]
    pid = trained["id"]
    first = client.post(f"{API}/projects/{pid}/queue/rerank")
    assert first.status_code == 200, first.text
    head = first.json()
    assert head["strategy"] == "margin" and head["size"] > 0 and head["top_score"] is not None
    scores = [i["score"] for i in head["head"]]
    assert scores == sorted(scores, reverse=True)

    stats = client.get(f"{API}/projects/{pid}/stats").json()
    assert stats["stability"] is None  # one checkpoint so far
    before = stats["rankings"]  # labeling through /next ranked the cold-start queue already
    assert before[-1]["reason"] == "rerank" and before[-1]["strategy"] == "margin"
    assert before[-1]["top_score"] == pytest.approx(head["top_score"])

    body = {"semi_supervised": {"method": "none"}, "seed": 1}
    client.post(f"{API}/projects/{pid}/train", json=body)
    client.get(f"{API}/projects/{pid}/next", params={"annotator": "b"})  # auto ranking
    stats = client.get(f"{API}/projects/{pid}/stats").json()
    stability = stats["stability"]
    assert stability["from_version"] == 1 and stability["to_version"] == 2
    assert stability["n_compared"] == 120 and 0.0 <= stability["agreement"] <= 1.0
    assert len(stats["rankings"]) == len(before) + 1
    assert stats["rankings"][-1]["reason"] == "auto"


def test_prediction_agreement_reference() -> None:
    from app.services.stats import prediction_agreement

    rng = np.random.default_rng(0)
    a, b = rng.random((50, 3)), rng.random((40, 3))
    agreement, n, changed = prediction_agreement(a, b, multilabel=False)
    expected = (a[:40].argmax(1) != b.argmax(1)).sum()
    assert (n, changed) == (40, expected) and agreement == pytest.approx(1 - expected / 40)
