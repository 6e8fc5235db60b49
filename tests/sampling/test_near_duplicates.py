"""Near-duplicate detection against the pool index and inside the batch (brute-force checked)."""

import numpy as np
import pytest

from app.sampling.near_duplicates import find_near_duplicates
from app.sampling.vector_index import VectorIndex


def _pool(n: int = 200, dim: int = 12, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=(n, dim)).astype(np.float32)


def test_pool_and_batch_duplicates_are_found() -> None:
    pool = _pool()
    index = VectorIndex.build(pool, kind="flat")
    rng = np.random.default_rng(1)
    fresh = rng.normal(size=(3, 12)).astype(np.float32)
    batch = np.stack(
        [
            fresh[0],
            pool[17] * 3.0,  # same direction as pool row 17: similarity 1
            fresh[1],
            fresh[0] + 1e-4,  # near copy of batch row 0
            fresh[2],
        ]
    )
    found = find_near_duplicates(batch, start=200, threshold=0.99, pool_index=index)
    assert found.rows.tolist() == [1, 3]
    assert found.match_positions.tolist() == [17, 200]
    assert np.all(found.similarities >= 0.99)


def test_matches_brute_force_best_match() -> None:
    pool = _pool(150)
    batch = _pool(30, seed=5)
    batch[::3] = pool[::10][:10] + 0.01
    found = find_near_duplicates(
        batch, start=150, threshold=0.9, pool_index=VectorIndex.build(pool, kind="flat")
    )
    unit = lambda x: x / np.linalg.norm(x, axis=1, keepdims=True)  # noqa: E731
    sims = unit(batch) @ unit(pool).T
    expected = np.flatnonzero(sims.max(axis=1) >= 0.9)
    assert found.rows.tolist() == expected.tolist()
    assert found.match_positions.tolist() == sims[expected].argmax(axis=1).tolist()


def test_no_pool_and_bad_inputs() -> None:
    batch = _pool(4)
    assert find_near_duplicates(batch, start=0, threshold=0.99).rows.size == 0
    with pytest.raises(ValueError, match="threshold"):
        find_near_duplicates(batch, start=0, threshold=1.5)
    with pytest.raises(ValueError, match="expected 3"):
        find_near_duplicates(batch, start=3, threshold=0.9, pool_index=VectorIndex.build(_pool(5)))
