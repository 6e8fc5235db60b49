"""The near-duplicate filter, and that ranked native strategies never return near-duplicates."""

import numpy as np
import pytest

from app.strategies import default_registry
from app.strategies.base import PoolView
from app.strategies.dedupe import greedy_distinct, select_distinct

RANKED = ["least_confidence", "margin", "entropy", "bald", "information_density", "weighted",
          "kcenter", "badge", "diverse_margin"]


def test_greedy_distinct_drops_later_duplicates() -> None:
    x = np.array([[1, 0], [1, 0.001], [0, 1], [0.001, 1], [1, 1]], dtype=np.float32)
    assert greedy_distinct(x, 0.99).tolist() == [True, False, True, False, True]
    with pytest.raises(ValueError):
        greedy_distinct(x, 1.5)


def test_select_distinct_refills_when_too_few_distinct_rows() -> None:
    emb = np.ones((10, 3), dtype=np.float32)  # all identical
    selection = select_distinct(
        np.arange(10), np.arange(10.0), 4, np.random.default_rng(0), embeddings=emb
    )
    assert selection.positions.tolist() == [9, 8, 7, 6]
    assert selection.info["n_duplicates_refilled"] == 3


def _duplicated_view(tiny_view: PoolView) -> PoolView:
    """The tiny pool where every selectable row has an exact copy (same probs and embedding)."""
    import dataclasses

    candidates = tiny_view.unlabeled_positions()
    half = candidates.size // 2
    src, dst = candidates[:half], candidates[half : 2 * half]
    emb = np.array(tiny_view.embeddings)
    probs = np.array(tiny_view.probs)
    mc = np.array(tiny_view.mc_probs)
    emb[dst], probs[dst], mc[:, dst] = emb[src], probs[src], mc[:, src]
    return dataclasses.replace(tiny_view, embeddings=emb, probs=probs, mc_probs=mc)


@pytest.mark.parametrize("name", RANKED)
def test_batch_has_no_near_duplicates(name: str, tiny_view: PoolView) -> None:
    view = _duplicated_view(tiny_view)
    selection = default_registry().create(name, {}).select(view, 20, np.random.default_rng(0))
    emb = np.asarray(view.embeddings)[selection.positions].astype(np.float64)
    unit = emb / np.linalg.norm(emb, axis=1, keepdims=True)
    sims = unit @ unit.T
    np.fill_diagonal(sims, 0)
    assert sims.max() < 0.99
