"""Stopping signals: do more labels still pay?

* **Prediction stability** between the two latest checkpoints (Bloodgood & Vijay-Shanker 2009,
  "A Method for Stopping Active Learning Based on Stabilizing Predictions"): the share of pool
  items whose predicted class is the same under both, read from their ``probs.npy``.
* **Top acquisition score over time**: every queue ranking records its best score
  (``queue_rankings``); when it keeps falling, the model has little left to be unsure about
  (Vlachos 2008, "A stopping criterion for active learning").
"""

from pathlib import Path
from typing import Any

import numpy as np
from sqlalchemy import select
from sqlalchemy.orm import Session

from app.models import Checkpoint, Project, QueueRanking

_CHUNK_ROWS = 262_144


def prediction_agreement(
    older: np.ndarray, newer: np.ndarray, *, multilabel: bool
) -> tuple[float, int, int]:
    """Share of rows (of the common prefix) predicted the same by two checkpoints.

    Args:
        older: float ``[n1, c]`` probabilities of the earlier checkpoint (memory maps are fine).
        newer: float ``[n2, c]`` probabilities of the later one.
        multilabel: compare the thresholded (``>= 0.5``) label sets instead of the argmax.

    Returns:
        (agreement in ``[0, 1]``, rows compared ``min(n1, n2)``, rows that changed).

    Raises:
        ValueError: if the column counts differ.
    """
    if older.shape[1:] != newer.shape[1:]:
        raise ValueError(f"probs shapes differ: {older.shape} vs {newer.shape}")
    n = min(older.shape[0], newer.shape[0])
    changed = 0
    for start in range(0, n, _CHUNK_ROWS):  # bounded memory at a million rows
        stop = min(start + _CHUNK_ROWS, n)
        a, b = older[start:stop], newer[start:stop]
        if multilabel:
            changed += int(np.any((a >= 0.5) != (b >= 0.5), axis=1).sum())
        else:
            changed += int((np.argmax(a, axis=1) != np.argmax(b, axis=1)).sum())
    return (1.0 - changed / n if n else 1.0), n, changed


def project_stats(session: Session, project: Project, *, history: int = 100) -> dict[str, Any]:
    """Stopping signals of a project.

    Returns:
        ``{stability: {from_version, to_version, n_compared, n_changed, agreement} | None,
        rankings: [{created_at, checkpoint_id, strategy, reason, size, top_score, mean_score,
        n_unlabeled}] (oldest first, the latest ``history``)}``.
    """
    latest = session.scalars(
        select(Checkpoint)
        .where(Checkpoint.project_id == project.id)
        .order_by(Checkpoint.version.desc())
        .limit(2)
    ).all()
    stability = None
    if len(latest) == 2:
        newer, older = latest
        old_path, new_path = Path(older.path) / "probs.npy", Path(newer.path) / "probs.npy"
        if old_path.exists() and new_path.exists():
            agreement, n, changed = prediction_agreement(
                np.load(old_path, mmap_mode="r"),
                np.load(new_path, mmap_mode="r"),
                multilabel=project.task == "multilabel",
            )
            stability = {
                "from_version": older.version,
                "to_version": newer.version,
                "n_compared": n,
                "n_changed": changed,
                "agreement": agreement,
            }
    rows = session.scalars(
        select(QueueRanking)
        .where(QueueRanking.project_id == project.id)
        .order_by(QueueRanking.created_at.desc(), QueueRanking.id.desc())
        .limit(history)
    ).all()
    rankings = [
        {
            "created_at": row.created_at,
            "checkpoint_id": row.checkpoint_id,
            "strategy": row.strategy,
            "reason": row.reason,
            "size": row.size,
            "top_score": row.top_score,
            "mean_score": row.mean_score,
            "n_unlabeled": row.n_unlabeled,
        }
        for row in reversed(rows)
    ]
    return {"stability": stability, "rankings": rankings}
