"""Batch-mode queries for pipelines: run a strategy, store the batch, return it."""

import dataclasses
from datetime import datetime, timedelta
from typing import Any

import numpy as np
from sqlalchemy import select
from sqlalchemy.orm import Session

from app.errors import NotFound
from app.models import Checkpoint, Item, Lease, Project, QueryBatch, QueryItem
from app.schemas.labels import QueryCreate
from app.services import pool_view
from app.services.queue import now_utc, release_expired
from app.storage import ArtifactStore
from app.strategies.base import PoolView
from app.strategies.registry import StrategyRegistry


def create_batch(
    session: Session,
    project: Project,
    body: QueryCreate,
    *,
    strategies: StrategyRegistry,
    store: ArtifactStore,
    served_window_seconds: int = 0,
) -> QueryBatch:
    """Select ``batch_size`` unlabeled, unleased items with ``body.strategy`` and store them.

    Items ``/next`` served (leased, whatever became of the lease) within the last
    ``served_window_seconds`` are skipped too, so a pipeline never sends an annotator's
    current or just-finished item to a second labeler. ``info["n_recently_served"]`` counts
    them.

    Raises:
        UnknownStrategy, InvalidStrategyParams, UnsupportedTask: bad strategy request (422).
        ModelNotReady: the strategy needs a trained model (409).
        PoolExhausted: fewer selectable items than asked (409).
    """
    strategy = strategies.create(body.strategy, body.params)
    strategies.check_task(body.strategy, project.task)
    now = now_utc()
    release_expired(session, project, now)
    view = pool_view.load(session, project, store, needs=strategy.requires, now=now)
    view, n_served = _skip_recently_served(session, project, view, now, served_window_seconds)
    seed = body.seed if body.seed is not None else int(np.random.SeedSequence().entropy % 2**31)
    selection = strategy.select(view, body.batch_size, np.random.default_rng(seed))
    batch = QueryBatch(
        project_id=project.id,
        strategy=body.strategy,
        params=body.params,
        batch_size=body.batch_size,
        seed=seed,
        checkpoint_id=view.checkpoint_id,
        info={
            **{str(k): _jsonable(v) for k, v in selection.info.items()},
            "n_recently_served": n_served,
        },
    )
    item_ids = view.item_ids[selection.positions].tolist()
    batch.items = [
        QueryItem(item_id=item_id, rank=rank, score=float(score) if np.isfinite(score) else None)
        for rank, (item_id, score) in enumerate(zip(item_ids, selection.scores, strict=True))
    ]
    session.add(batch)
    session.flush()
    return batch


def _skip_recently_served(
    session: Session, project: Project, view: PoolView, now: datetime, window_seconds: int
) -> tuple[PoolView, int]:
    """The view with items leased since ``now - window_seconds`` blocked, and how many of them
    were otherwise selectable (neither labeled nor leased now)."""
    if window_seconds <= 0 or view.n_items == 0:
        return view, 0
    since = now - timedelta(seconds=window_seconds)
    positions = np.array(
        session.scalars(
            select(Item.position)
            .join(Lease, Lease.item_id == Item.id)
            .where(Lease.project_id == project.id, Lease.created_at >= since)
            .distinct()
        ).all(),
        dtype=np.int64,
    )
    positions = positions[positions < view.n_items]
    if positions.size == 0:
        return view, 0
    blocked = np.zeros(view.n_items, dtype=bool) if view.blocked is None else view.blocked.copy()
    newly = positions[~blocked[positions] & ~view.labeled[positions]]
    blocked[positions] = True
    return dataclasses.replace(view, blocked=blocked), int(newly.size)


def get_batch(session: Session, project: Project, batch_id: int) -> QueryBatch:
    """A stored batch of this project, or NotFound."""
    batch = session.get(QueryBatch, batch_id)
    if batch is None or batch.project_id != project.id:
        raise NotFound("query", batch_id)
    return batch


def read_batch(session: Session, batch: QueryBatch) -> dict[str, Any]:
    """API view of a batch (adds the model version)."""
    version = None
    if batch.checkpoint_id is not None:
        version = session.scalar(
            select(Checkpoint.version).where(Checkpoint.id == batch.checkpoint_id)
        )
    return {
        "id": batch.id,
        "strategy": batch.strategy,
        "params": batch.params,
        "seed": batch.seed,
        "model_version": version,
        "checkpoint_id": batch.checkpoint_id,
        "info": batch.info,
        "items": [{"item_id": q.item_id, "rank": q.rank, "score": q.score} for q in batch.items],
        "created_at": batch.created_at,
    }


def _jsonable(value: object) -> object:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    return value
