"""TypicalClusters (TypiClust) on blobs, and its typicality functions against brute force."""

from collections.abc import Callable

import numpy as np
import pytest

from app.strategies.base import PoolView
from app.strategies.coldstart import (
    TypicalClusters,
    cluster_typicality,
    kmeans_cluster_ids,
    typicality_scores,
)

ViewFactory = Callable[..., PoolView]


def _blobs(
    n_blobs: int = 5, per_blob: int = 60, dim: int = 8, seed: int = 0
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Well-separated gaussian blobs: (embeddings [m, d] float32, blob id [m], centres)."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(scale=20.0, size=(n_blobs, dim))
    sizes = per_blob + np.arange(n_blobs) * 7  # unequal blob sizes
    blob = np.repeat(np.arange(n_blobs), sizes)
    embeddings = (centres[blob] + rng.normal(size=(blob.size, dim))).astype(np.float32)
    return embeddings, blob, centres


def _brute_force_typicality(x: np.ndarray, k: int) -> np.ndarray:
    distances = np.sqrt(((x[:, None, :] - x[None, :, :]) ** 2).sum(-1, dtype=np.float64))
    np.fill_diagonal(distances, np.inf)
    nearest = np.sort(distances, axis=1)[:, :k]
    return 1.0 / (nearest.mean(axis=1) + 1e-5)


def test_one_typical_point_per_blob_near_its_centre(view_from_arrays: ViewFactory) -> None:
    embeddings, blob, centres = _blobs()
    view = view_from_arrays(embeddings=embeddings)

    selection = TypicalClusters().select(view, 5, np.random.default_rng(0))

    chosen_blobs = blob[selection.positions]
    assert sorted(chosen_blobs.tolist()) == [0, 1, 2, 3, 4]
    for position, b in zip(selection.positions, chosen_blobs, strict=True):
        members = embeddings[blob == b]
        to_centre = np.linalg.norm(members - centres[b], axis=1)
        # the most typical point is among the 25% of its blob closest to the centre
        assert np.linalg.norm(embeddings[position] - centres[b]) <= np.quantile(to_centre, 0.25)
    assert selection.info["n_nonempty_clusters"] == 5 and selection.info["n_filled"] == 0


def test_skips_labeled_and_blocked_and_subsamples(view_from_arrays: ViewFactory) -> None:
    embeddings, blob, _ = _blobs(n_blobs=4, per_blob=100)
    labeled = np.zeros(blob.size, dtype=bool)
    labeled[::2] = True
    blocked = np.zeros(blob.size, dtype=bool)
    blocked[1::6] = True
    view = view_from_arrays(embeddings=embeddings, labeled=labeled, blocked=blocked)

    selection = TypicalClusters(max_points=80, k_neighbors=5).select(
        view, 4, np.random.default_rng(3)
    )

    assert np.isin(selection.positions, view.unlabeled_positions()).all()
    assert sorted(blob[selection.positions].tolist()) == [0, 1, 2, 3]
    assert selection.info["n_clustered"] == 80
    assert selection.info["n_candidates"] == view.n_unlabeled


def test_fills_with_typical_points_when_clusters_collapse(view_from_arrays: ViewFactory) -> None:
    embeddings = np.ones((40, 4), dtype=np.float32)  # all equal: k-means keeps one cluster
    view = view_from_arrays(embeddings=embeddings)

    selection = TypicalClusters(k_neighbors=3).select(view, 3, np.random.default_rng(0))

    assert np.unique(selection.positions).size == 3
    assert selection.info["n_nonempty_clusters"] == 1
    assert selection.info["n_filled"] == 2


def test_typicality_matches_brute_force() -> None:
    x = np.random.default_rng(0).normal(size=(120, 6)).astype(np.float32)

    np.testing.assert_allclose(typicality_scores(x, 7), _brute_force_typicality(x, 7), rtol=1e-4)


def test_typicality_caps_k_and_handles_singletons() -> None:
    x = np.random.default_rng(1).normal(size=(4, 3)).astype(np.float32)

    np.testing.assert_allclose(typicality_scores(x, 50), _brute_force_typicality(x, 3), rtol=1e-4)
    np.testing.assert_array_equal(typicality_scores(x[:1], 5), [0.0])


def test_cluster_typicality_is_computed_inside_each_cluster() -> None:
    x = np.random.default_rng(2).normal(size=(90, 5)).astype(np.float32)
    ids = np.repeat([2, 0, 7], 30)[np.random.default_rng(3).permutation(90)]
    ids[5] = 9  # a cluster of one

    scores = cluster_typicality(x, ids, 4)

    for c in (0, 2, 7):
        members = ids == c
        np.testing.assert_allclose(
            scores[members], _brute_force_typicality(x[members], 4), rtol=1e-4
        )
    assert scores[5] == 0.0


def test_kmeans_is_deterministic_under_a_seed() -> None:
    embeddings, blob, _ = _blobs()

    first = kmeans_cluster_ids(embeddings, 5, max_iter=10, seed=42)
    second = kmeans_cluster_ids(embeddings, 5, max_iter=10, seed=42)

    np.testing.assert_array_equal(first, second)
    # each blob lands in exactly one cluster (the clustering recovers the blobs)
    assert all(np.unique(first[blob == b]).size == 1 for b in range(5))


@pytest.mark.parametrize(
    "params",
    [{"max_points": 0}, {"k_neighbors": 0}, {"max_iter": 1.5}, {"max_points": True}],
)
def test_bad_params_raise_value_error(params: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        TypicalClusters(**params)  # type: ignore[arg-type]
