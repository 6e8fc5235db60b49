"""Information density against a brute-force numpy reference."""

import numpy as np

from app.strategies.density import InformationDensity, knn_density
from app.strategies.uncertainty import entropy_scores


def _unit(x: np.ndarray) -> np.ndarray:
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def test_knn_density_matches_sorted_similarity_matrix() -> None:
    rng = np.random.default_rng(0)
    q, r = rng.normal(size=(30, 6)), rng.normal(size=(80, 6))
    sims = _unit(q) @ _unit(r).T
    expected = -np.sort(-sims, axis=1)[:, :5].mean(axis=1)
    np.testing.assert_allclose(knn_density(q, r, 5), expected, rtol=1e-5, atol=1e-5)


def test_strategy_matches_brute_force_when_nothing_is_capped(view_from_arrays) -> None:  # type: ignore[no-untyped-def]
    rng = np.random.default_rng(1)
    x = rng.normal(size=(150, 8)).astype(np.float32)
    probs = rng.dirichlet(np.ones(3), size=150).astype(np.float32)
    labeled = np.zeros(150, dtype=bool)
    labeled[:20] = True
    view = view_from_arrays(probs=probs, embeddings=x, labeled=labeled)

    selection = InformationDensity(k_neighbors=7, max_similarity=1.0).select(
        view, 10, np.random.default_rng(0)
    )

    sims = _unit(x[20:].astype(np.float64)) @ _unit(x.astype(np.float64)).T  # reference: all rows
    density = -np.sort(-sims, axis=1)[:, :7].mean(axis=1)
    expected = entropy_scores(probs[20:]) * np.maximum(density, 0)
    assert selection.positions.tolist() == (20 + np.argsort(-expected)[:10]).tolist()
    np.testing.assert_allclose(selection.scores, np.sort(expected)[::-1][:10], rtol=1e-4)


def test_reports_shortlist_and_reference(view_from_arrays) -> None:  # type: ignore[no-untyped-def]
    rng = np.random.default_rng(2)
    view = view_from_arrays(
        probs=rng.dirichlet(np.ones(3), size=400).astype(np.float32),
        embeddings=rng.normal(size=(400, 4)).astype(np.float32),
    )
    info = InformationDensity(shortlist=50, reference_size=100).select(
        view, 5, np.random.default_rng(0)
    ).info
    assert info["n_shortlist"] == 50 and info["n_reference"] == 100
