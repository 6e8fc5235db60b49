"""Core-set k-center, BADGE and diverse margin against brute-force numpy references."""

import numpy as np
import pytest

from app.errors import ModelNotReady
from app.strategies.base import PoolView
from app.strategies.diversity import (
    BADGE,
    DiverseMargin,
    KCenterGreedy,
    badge_kmeans_pp,
    gradient_residuals,
    k_center_greedy,
    min_sq_distances,
)


def _brute_k_center(x: np.ndarray, centres: np.ndarray, n: int) -> list[int]:
    """Sener & Savarese Algorithm 1 with a full distance matrix."""
    x64, c64 = x.astype(np.float64), centres.astype(np.float64)
    dist = np.sqrt(((x64[:, None, :] - c64[None, :, :]) ** 2).sum(-1)).min(axis=1)
    chosen: list[int] = []
    for _ in range(n):
        j = int(np.argmax(dist))
        chosen.append(j)
        dist = np.minimum(dist, np.sqrt(((x64 - x64[j]) ** 2).sum(-1)))
        dist[chosen] = -1
    return chosen


def test_k_center_greedy_matches_brute_force() -> None:
    rng = np.random.default_rng(1)
    x = rng.normal(size=(300, 8)).astype(np.float32)
    centres = rng.normal(size=(12, 8)).astype(np.float32)

    rows, distances = k_center_greedy(x, 25, min_sq_distances(x, centres))

    assert rows.tolist() == _brute_k_center(x, centres, 25)
    assert np.all(np.diff(distances) <= 1e-6)


def test_min_sq_distances_matches_numpy() -> None:
    rng = np.random.default_rng(2)
    x, centres = rng.normal(size=(50, 4)), rng.normal(size=(7, 4))
    expected = ((x[:, None] - centres[None]) ** 2).sum(-1).min(1)
    np.testing.assert_allclose(min_sq_distances(x, centres), expected, rtol=1e-4, atol=1e-4)
    assert np.isinf(min_sq_distances(x, np.zeros((0, 4)))).all()


def test_kcenter_strategy_uses_labeled_rows_as_centres(view_from_arrays) -> None:  # type: ignore[no-untyped-def]
    rng = np.random.default_rng(3)
    x = rng.normal(size=(120, 5)).astype(np.float32)
    labeled = np.zeros(120, dtype=bool)
    labeled[:10] = True
    view = view_from_arrays(embeddings=x, labeled=labeled)

    selection = KCenterGreedy().select(view, 7, np.random.default_rng(0))

    expected = _brute_k_center(x[10:], x[:10], 7)
    assert selection.positions.tolist() == [10 + j for j in expected]
    assert selection.info["n_centres"] == 10


def test_kcenter_caps_candidates(view_from_arrays) -> None:  # type: ignore[no-untyped-def]
    x = np.random.default_rng(4).normal(size=(500, 3)).astype(np.float32)
    selection = KCenterGreedy(max_candidates=50).select(
        view_from_arrays(embeddings=x), 5, np.random.default_rng(0)
    )
    assert selection.info["n_considered"] == 50 and selection.info["n_candidates"] == 500


def test_kcenter_spreads_over_clusters(view_from_arrays) -> None:  # type: ignore[no-untyped-def]
    rng = np.random.default_rng(5)
    centres = np.eye(4, dtype=np.float32) * 100
    x = (np.repeat(centres, 50, axis=0) + rng.normal(size=(200, 4))).astype(np.float32)
    selection = KCenterGreedy().select(view_from_arrays(embeddings=x), 4, np.random.default_rng(0))
    assert sorted(selection.positions // 50) == [0, 1, 2, 3]


def _badge_reference(probs, hidden, n, rng):  # type: ignore[no-untyped-def]
    """k-means++ on explicitly materialized gradient embeddings (BADGE, Ash et al. 2020)."""
    residual = probs.astype(np.float64).copy()
    residual[np.arange(len(probs)), probs.argmax(1)] -= 1
    g = np.einsum("ic,id->icd", residual, hidden.astype(np.float64)).reshape(len(probs), -1)
    j = int(np.argmax((g**2).sum(1)))
    chosen = [j]
    d2 = ((g - g[j]) ** 2).sum(1)
    for _ in range(n - 1):
        w = d2.copy()
        w[chosen] = 0
        j = int(rng.choice(len(g), p=w / w.sum()))
        chosen.append(j)
        d2 = np.minimum(d2, ((g - g[j]) ** 2).sum(1))
    return chosen


def test_badge_implicit_distances_match_materialized_gradients() -> None:
    rng = np.random.default_rng(6)
    probs = rng.dirichlet(np.ones(4), size=150).astype(np.float32)
    hidden = rng.normal(size=(150, 6)).astype(np.float32)

    rows, _ = badge_kmeans_pp(
        gradient_residuals(probs, multilabel=False), hidden, 12, np.random.default_rng(9)
    )

    assert rows.tolist() == _badge_reference(probs, hidden, 12, np.random.default_rng(9))


def test_badge_needs_probs_and_embeddings(tiny_view: PoolView) -> None:
    import dataclasses

    with pytest.raises(ModelNotReady):
        BADGE().select(dataclasses.replace(tiny_view, probs=None), 3, np.random.default_rng(0))


def test_diverse_margin_takes_one_per_cluster(view_from_arrays) -> None:  # type: ignore[no-untyped-def]
    rng = np.random.default_rng(7)
    centres = np.eye(5, dtype=np.float32) * 50
    x = (np.repeat(centres, 40, axis=0) + rng.normal(size=(200, 5))).astype(np.float32)
    probs = np.full((200, 2), 0.5, dtype=np.float32)  # every row equally uncertain
    probs[:, 0] += rng.uniform(0, 0.01, size=200)
    probs[:, 1] = 1 - probs[:, 0]

    selection = DiverseMargin(beta=40).select(
        view_from_arrays(probs=probs, embeddings=x), 5, np.random.default_rng(0)
    )

    assert sorted(selection.positions // 40) == [0, 1, 2, 3, 4]
    assert np.all(np.diff(selection.scores) <= 0)


@pytest.mark.parametrize("strategy", [KCenterGreedy, BADGE])
def test_default_candidate_cap_bounds_large_pools(strategy, view_from_arrays) -> None:  # type: ignore[no-untyped-def]
    """The defaults subsample pools beyond 20,000 selectable rows (the per-pick GEMV bound)."""
    rng = np.random.default_rng(6)
    x = rng.normal(size=(25_000, 4)).astype(np.float32)
    logits = rng.normal(size=(25_000, 3))
    probs = (np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)).astype(np.float32)
    selection = strategy().select(
        view_from_arrays(embeddings=x, probs=probs), 3, np.random.default_rng(0)
    )
    assert selection.info["max_candidates"] == 20_000
    assert selection.info["n_considered"] == 20_000 and selection.info["n_candidates"] == 25_000
    assert np.unique(selection.positions).size == 3
