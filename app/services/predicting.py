"""Predictions of the active checkpoint: cached probabilities for pool items, the net for new
inputs (embedded with the project's embedder)."""

import threading
from collections import OrderedDict
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
from sqlalchemy import select
from sqlalchemy.orm import Session

from app.errors import InvalidInput, ModelNotReady, NotFound
from app.ml.calibration import apply_temperature
from app.models import Checkpoint, Item, Project
from app.schemas.jobs import PredictRequest
from app.services.embedding import EmbedderCache
from app.services.pool_view import checkpoint_array
from app.storage import ArtifactStore


class NetCache:
    """A few loaded nets, keyed by checkpoint path (loading costs a disk read)."""

    def __init__(self, max_entries: int = 4) -> None:
        self._nets: OrderedDict[str, Any] = OrderedDict()
        self._lock = threading.Lock()
        self._max = max_entries

    def probs(self, checkpoint: Checkpoint, features: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
        """Run the checkpoint's net on ``features`` ``[n, d]``: float32 ``[n, c]``, calibrated
        with the checkpoint's temperature (like its stored ``probs.npy``)."""
        from app.ml.artifacts import load_net
        from app.ml.predict import predict_proba, resolve_device

        device = resolve_device("cpu")
        with self._lock:
            net = self._nets.get(checkpoint.path)
            if net is None:
                net = load_net(Path(checkpoint.path), device)
                self._nets[checkpoint.path] = net
                while len(self._nets) > self._max:
                    self._nets.popitem(last=False)
        temperature = float((checkpoint.metrics or {}).get("temperature") or 1.0)
        return apply_temperature(
            predict_proba(net, features, device=device), temperature,
            multilabel=getattr(net, "task", None) == "multilabel",
        )


def active_checkpoint(project: Project) -> Checkpoint:
    """The project's active checkpoint.

    Raises:
        ModelNotReady: none trained yet.
    """
    if project.active_checkpoint is None:
        raise ModelNotReady("no trained model yet: POST /projects/{id}/train first")
    return project.active_checkpoint


def prediction(project: Project, probs_row: npt.NDArray[np.float32]) -> dict[str, Any]:
    """Label, confidence and per-label probabilities of one probability row."""
    best = int(np.argmax(probs_row))
    out: dict[str, Any] = {
        "label": project.labels[best],
        "confidence": float(probs_row[best]),
        "probs": {name: float(p) for name, p in zip(project.labels, probs_row, strict=False)},
    }
    if project.task == "multilabel":
        out["labels"] = [name for name, p in zip(project.labels, probs_row, strict=False) if p >= 0.5]
    return out


def item_prediction(project: Project, item: Item) -> tuple[dict[str, Any] | None, npt.NDArray[np.float32] | None]:
    """The cached prediction for a pool item, or (None, None) without a covering checkpoint."""
    checkpoint = project.active_checkpoint
    if checkpoint is None or item.position >= checkpoint.pool_size:
        return None, None
    probs = checkpoint_array(checkpoint, "probs")
    if probs is None:
        return None, None
    row = np.asarray(probs[item.position], dtype=np.float32)
    return prediction(project, row), row


def predict(
    session: Session,
    project: Project,
    body: PredictRequest,
    *,
    embedders: EmbedderCache,
    nets: NetCache,
    store: ArtifactStore,
) -> dict[str, Any]:
    """Predict for pool items (cached arrays) or new texts/vectors (embed + net).

    Raises:
        ModelNotReady: no active checkpoint.
        NotFound: an item id is not in the project.
        InvalidInput: the input kind does not fit the project's modality, or bad vectors.
    """
    checkpoint = active_checkpoint(project)
    if body.item_ids is not None:
        rows = dict(
            session.execute(
                select(Item.id, Item.position).where(
                    Item.project_id == project.id, Item.id.in_(body.item_ids)
                )
            ).all()
        )
        missing = [i for i in body.item_ids if i not in rows]
        if missing:
            raise NotFound("item", missing[0])
        probs = checkpoint_array(checkpoint, "probs")
        predictions = []
        for item_id in body.item_ids:
            position = rows[item_id]
            if probs is None or position >= checkpoint.pool_size:
                pool = store.read_features(project.id, project.pool_size)
                row = nets.probs(checkpoint, np.asarray(pool[position : position + 1]))[0]
            else:
                row = np.asarray(probs[position], dtype=np.float32)
            predictions.append({"item_id": item_id, **prediction(project, row)})
        return {"model_version": checkpoint.version, "predictions": predictions}
    if body.texts is not None:
        if project.modality != "text":
            raise InvalidInput("texts can only be predicted in a text project", field="texts")
        features = embedders.embed(project.embedder, body.texts)
    else:
        if project.modality == "text" or project.modality == "image":
            raise InvalidInput(
                f"a {project.modality} project predicts from its own embedder; send "
                "texts or item_ids", field="vectors"
            )
        features = np.asarray(body.vectors, dtype=np.float32)
        if features.ndim != 2 or features.shape[1] != project.feature_dim:
            raise InvalidInput(f"vectors must have dimension {project.feature_dim}", field="vectors")
        if not np.isfinite(features).all():
            raise InvalidInput("vectors must be finite", field="vectors")
    probs_new = nets.probs(checkpoint, features)
    return {
        "model_version": checkpoint.version,
        "predictions": [prediction(project, row) for row in probs_new],
    }
