"""Tiny synthetic pool views for the strategy tests (np.random.default_rng(0), 200 rows)."""

from collections.abc import Callable

import numpy as np
import pytest

from app.strategies.base import PoolView

N_ITEMS = 200
N_CLASSES = 5
DIM = 16
MC_SAMPLES = 6


def make_view(task: str = "multiclass", seed: int = 0) -> PoolView:
    """A 200-position pool: 5 clustered blobs in 16-d, 40 labeled, 20 blocked (5 overlap), with
    probs, embeddings and 6 MC-dropout samples."""
    rng = np.random.default_rng(seed)
    blob = rng.integers(0, N_CLASSES, size=N_ITEMS)
    centres = rng.normal(scale=6.0, size=(N_CLASSES, DIM))
    embeddings = (centres[blob] + rng.normal(size=(N_ITEMS, DIM))).astype(np.float32)
    labeled = np.zeros(N_ITEMS, dtype=bool)
    labeled[rng.choice(N_ITEMS, size=40, replace=False)] = True
    blocked = np.zeros(N_ITEMS, dtype=bool)
    blocked[rng.choice(np.flatnonzero(labeled), size=5, replace=False)] = True
    blocked[rng.choice(np.flatnonzero(~labeled), size=15, replace=False)] = True
    if task == "multilabel":
        probs = rng.random((N_ITEMS, N_CLASSES)).astype(np.float32)  # independent sigmoids
        labels = np.full(N_ITEMS, -1, dtype=np.int64)
    else:
        n_classes = 2 if task == "binary" else N_CLASSES
        probs = rng.dirichlet(np.ones(n_classes), size=N_ITEMS).astype(np.float32)
        labels = np.where(labeled, blob % n_classes, -1).astype(np.int64)
    # MC-dropout samples: noisy copies of probs (multilabel: independent sigmoids)
    noise = rng.normal(scale=0.5, size=(MC_SAMPLES, *probs.shape))
    logits = np.log(np.clip(probs, 1e-6, 1.0))[None] + noise
    if task == "multilabel":
        mc_probs = (1.0 / (1.0 + np.exp(-logits))).astype(np.float32)
    else:
        mc = np.exp(logits - logits.max(axis=2, keepdims=True))
        mc_probs = (mc / mc.sum(axis=2, keepdims=True)).astype(np.float32)
    return PoolView(
        item_ids=np.arange(1000, 1000 + N_ITEMS, dtype=np.int64),
        labeled=labeled,
        labels=labels,
        task=task,
        n_classes=probs.shape[1],
        blocked=blocked,
        probs=probs,
        embeddings=embeddings,
        mc_probs=mc_probs,
        checkpoint_id=7,
    )


@pytest.fixture
def tiny_view() -> PoolView:
    """Multiclass pool of 200 positions: 5 classes, 40 labeled, 20 blocked, 145 selectable."""
    return make_view("multiclass")


@pytest.fixture
def tiny_multilabel_view() -> PoolView:
    """The same pool as a multilabel project (per-label sigmoid probabilities)."""
    return make_view("multilabel")


def _fresh_view(
    *,
    probs: np.ndarray | None = None,
    embeddings: np.ndarray | None = None,
    task: str = "multiclass",
    labeled: np.ndarray | None = None,
    blocked: np.ndarray | None = None,
) -> PoolView:
    """A view over the given arrays; every position is selectable unless told otherwise."""
    source = probs if probs is not None else embeddings
    if source is None:
        raise ValueError("give probs or embeddings")
    n = source.shape[0]
    is_labeled = np.zeros(n, dtype=bool) if labeled is None else labeled
    return PoolView(
        item_ids=np.arange(n, dtype=np.int64),
        labeled=is_labeled,
        labels=np.full(n, -1, dtype=np.int64),
        task=task,
        n_classes=probs.shape[1] if probs is not None else 2,
        blocked=blocked,
        probs=probs,
        embeddings=embeddings,
    )


@pytest.fixture
def view_from_arrays() -> Callable[..., PoolView]:
    """Factory fixture: ``view_from_arrays(probs=..., embeddings=..., task=..., labeled=...)``."""
    return _fresh_view


@pytest.fixture
def view_for_task() -> Callable[[str], PoolView]:
    """Factory fixture: the tiny pool as a ``binary``, ``multiclass`` or ``multilabel`` project."""
    return make_view
