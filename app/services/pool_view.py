"""Build a strategies.PoolView from DB rows and the active checkpoint's cached arrays."""

from datetime import UTC, datetime
from pathlib import Path

import numpy as np
from sqlalchemy import select
from sqlalchemy.orm import Session

from app.errors import ModelNotReady
from app.models import Checkpoint, Item, ItemStatus, Project
from app.strategies.base import PoolView
from app.storage import ArtifactStore


def checkpoint_array(checkpoint: Checkpoint, name: str) -> np.ndarray | None:
    """A memory-mapped array of the checkpoint (``probs``, ``embeddings``...), or None."""
    path = Path(checkpoint.path) / f"{name}.npy"
    if not path.exists():
        return None
    return np.load(path, mmap_mode="r")


def load(
    session: Session,
    project: Project,
    store: ArtifactStore,
    *,
    needs: frozenset[str],
    now: datetime,
    use_checkpoint: bool = True,
) -> PoolView:
    """The pool of ``project`` in position order.

    With an active checkpoint the view covers the positions that checkpoint scored (items
    imported since are served after the next retrain); without one, the whole pool, with the
    pool's input features as ``embeddings``.

    Raises:
        ModelNotReady: a needed array (``probs``, ``mc_probs``) has no checkpoint to come from.
    """
    checkpoint = project.active_checkpoint if use_checkpoint else None
    n = checkpoint.pool_size if checkpoint is not None else project.pool_size
    rows = session.execute(
        select(Item.position, Item.id, Item.status, Item.labels, Item.lease_expires_at).where(
            Item.project_id == project.id, Item.position < n
        )
    ).all()
    item_ids = np.full(n, -1, dtype=np.int64)
    labeled = np.zeros(n, dtype=bool)
    blocked = np.zeros(n, dtype=bool)
    labels = np.full(n, -1, dtype=np.int64)
    index = {name: i for i, name in enumerate(project.labels)}
    single = project.task != "multilabel"
    for position, item_id, status, item_labels, expires in rows:
        item_ids[position] = item_id
        if status == ItemStatus.LABELED:
            labeled[position] = True
            if single and item_labels:
                labels[position] = index.get(item_labels[0], -1)
        if expires is not None and _aware(expires) > now:
            blocked[position] = True
    blocked |= item_ids < 0
    arrays: dict[str, np.ndarray | None] = {}
    for name in ("probs", "embeddings", "mc_probs"):
        # probs and embeddings are always memory-mapped when the checkpoint has them (free until
        # read): strategies use the embeddings for the near-duplicate filter of a batch
        if name in needs or (name in ("probs", "embeddings") and checkpoint is not None):
            arrays[name] = checkpoint_array(checkpoint, name) if checkpoint is not None else None
    if arrays.get("embeddings") is None and "embeddings" in needs and n:
        arrays["embeddings"] = store.read_features(project.id, n)
    missing = sorted(name for name in needs if arrays.get(name) is None)
    if missing:
        raise ModelNotReady(
            f"this strategy needs {', '.join(missing)} from a trained model; train one first",
            missing=missing,
        )
    return PoolView(
        item_ids=item_ids,
        labeled=labeled,
        labels=labels,
        task=project.task,
        n_classes=len(project.labels),
        blocked=blocked,
        probs=arrays.get("probs"),
        embeddings=arrays.get("embeddings"),
        mc_probs=arrays.get("mc_probs"),
        checkpoint_id=checkpoint.id if checkpoint is not None else None,
    )


def _aware(moment: datetime) -> datetime:
    """SQLite returns naive datetimes; they are stored in UTC."""
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)
