"""The per-project vector index over the pool's features: build, persist, update, describe.

One index per project lives in the artifact store (``projects/<id>/index/index.faiss`` plus
``index.json`` with how it was built); both files are written atomically. It covers the pool's
input features (the embedder's space), so text queries, near-duplicate checks at import and
hard-negative mining all search the same space without running a network in the request.

- **Kind by size**: exact ``flat`` below ``QUARRY_INDEX_EXACT_BELOW`` rows, else
  ``QUARRY_INDEX_APPROXIMATE`` (IVF or HNSW) with its search knob (``nprobe`` / ``ef_search``)
  calibrated to reach ``QUARRY_INDEX_RECALL_TARGET`` recall@10 against exact search on a sample.
- **Incremental**: an import appends its rows to the stored index after commit; any reader that
  finds the stored index behind the pool adds the missing tail rows first (idempotent).
- **Rebuilt after a retrain** (in the training job's thread): the kind is chosen again for the
  grown pool, IVF cells are re-trained and recall is re-measured.
"""

import json
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
from sqlalchemy import select, update
from sqlalchemy.orm import Session, sessionmaker

from app.config import Settings
from app.errors import InvalidInput, NotFound
from app.models import Item, Project
from app.sampling.index_store import IndexStore
from app.sampling.near_duplicates import find_near_duplicates
from app.sampling.vector_index import VectorIndex, calibrate
from app.schemas.indexing import SearchRequest
from app.services.embedding import EmbedderCache
from app.storage import ArtifactStore

log = logging.getLogger(__name__)

INDEX_FILE = "index.faiss"
META_FILE = "index.json"
RECALL_SAMPLE = 200
RECALL_K = 10
NEAR_DUPLICATES_REPORTED = 1000

_locks: dict[int, threading.Lock] = {}
_locks_guard = threading.Lock()


@dataclass(frozen=True)
class IndexConfig:
    """How indexes are built (from Settings)."""

    exact_below: int
    approximate: str
    recall_target: float

    @classmethod
    def from_settings(cls, settings: Settings) -> "IndexConfig":
        """The index settings of the service."""
        return cls(
            exact_below=settings.index_exact_below,
            approximate=settings.index_approximate,
            recall_target=settings.index_recall_target,
        )


def _project_lock(project_id: int) -> threading.Lock:
    with _locks_guard:
        return _locks.setdefault(project_id, threading.Lock())


def index_dir(store: ArtifactStore, project_id: int) -> Path:
    """Folder of the project's index files."""
    return store.project_dir(project_id) / "index"


def build(features: np.ndarray, config: IndexConfig) -> tuple[VectorIndex, dict[str, Any]]:
    """Build and calibrate an index over ``features``; returns it with its description."""
    started = time.perf_counter()
    index = VectorIndex.build(
        features,
        kind="auto",
        exact_below=config.exact_below,
        approximate="hnsw" if config.approximate == "hnsw" else "ivf",
    )
    built = time.perf_counter()
    recall = calibrate(
        index, features, target=config.recall_target, sample_size=RECALL_SAMPLE, k=RECALL_K
    )
    now = datetime.now(UTC).isoformat()
    meta = {
        "kind": index.kind,
        "size": index.ntotal,
        "dim": index.dim,
        "build_seconds": round(built - started, 4),
        "calibrate_seconds": round(time.perf_counter() - built, 4),
        "recall_at_10": recall,
        "recall_sample": min(RECALL_SAMPLE, index.ntotal),
        "recall_target": config.recall_target,
        "exact_below": config.exact_below,
        "search_params": index.search_params(),
        "built_size": index.ntotal,
        "added_since_build": 0,
        "built_at": now,
        "updated_at": now,
        "space": "features",
    }
    return index, meta


def _save(store: ArtifactStore, project_id: int, index: VectorIndex, meta: dict[str, Any]) -> None:
    folder = index_dir(store, project_id)
    folder.mkdir(parents=True, exist_ok=True)
    index.save(folder / INDEX_FILE)
    tmp = folder / f".{META_FILE}.tmp"
    tmp.write_text(json.dumps(meta), encoding="utf-8")
    tmp.replace(folder / META_FILE)


def _read(store: ArtifactStore, project_id: int) -> tuple[VectorIndex | None, dict[str, Any]]:
    folder = index_dir(store, project_id)
    try:
        index = VectorIndex.load(folder / INDEX_FILE)
        meta = json.loads((folder / META_FILE).read_text(encoding="utf-8"))
    except (FileNotFoundError, ValueError):
        return None, {}
    return index, meta


def _load_or_update(
    project_id: int, pool_size: int, store: ArtifactStore, config: IndexConfig
) -> VectorIndex:
    """The stored index brought up to ``pool_size`` rows (built when missing or unusable)."""
    with _project_lock(project_id):
        features = store.read_features(project_id, pool_size)
        index, meta = _read(store, project_id)
        if index is None or index.ntotal > pool_size or index.dim != features.shape[1]:
            index, meta = build(np.asarray(features), config)
            _save(store, project_id, index, meta)
            return index
        if index.ntotal < pool_size:
            added = pool_size - index.ntotal
            index.add(np.asarray(features[index.ntotal : pool_size]))
            meta.update(
                size=index.ntotal,
                added_since_build=int(meta.get("added_since_build", 0)) + added,
                updated_at=datetime.now(UTC).isoformat(),
            )
            _save(store, project_id, index, meta)
        return index


def current_index(
    project: Project, *, store: ArtifactStore, indexes: IndexStore, config: IndexConfig
) -> VectorIndex:
    """The project's index over positions ``0 .. pool_size - 1`` (cached per pool size).

    Raises:
        InvalidInput: the pool is empty.
    """
    if project.pool_size == 0:
        raise InvalidInput("the pool is empty; import items first", field="project_id")
    pid, size = project.id, project.pool_size
    return indexes.get((pid, size), lambda: _load_or_update(pid, size, store, config))


def after_import(
    project_id: int,
    pool_size: int,
    *,
    store: ArtifactStore,
    indexes: IndexStore,
    config: IndexConfig,
) -> None:
    """Add an import's rows to the stored index (after commit); failures are only logged."""
    try:
        indexes.invalidate(project_id)
        indexes.get(
            (project_id, pool_size), lambda: _load_or_update(project_id, pool_size, store, config)
        )
    except Exception:  # the import itself committed; the next reader catches up
        log.exception("index update after import failed for project %s", project_id)


def rebuild(
    project_id: int,
    *,
    sessionmaker: sessionmaker[Session],
    store: ArtifactStore,
    indexes: IndexStore,
    config: IndexConfig,
) -> None:
    """Rebuild the index from scratch (after a retrain); failures are only logged."""
    try:
        with sessionmaker() as session:
            pool_size = session.scalar(select(Project.pool_size).where(Project.id == project_id))
        if not pool_size:
            return
        with _project_lock(project_id):
            index, meta = build(np.asarray(store.read_features(project_id, pool_size)), config)
            _save(store, project_id, index, meta)
        indexes.invalidate(project_id)
        indexes.get((project_id, pool_size), lambda: index)
    except Exception:  # the checkpoint is active either way; readers rebuild on demand
        log.exception("index rebuild failed for project %s", project_id)


def on_checkpoint_hook(
    *,
    sessionmaker: sessionmaker[Session],
    store: ArtifactStore,
    indexes: IndexStore,
    settings: Settings,
) -> Callable[[int], None]:
    """``project_id -> None`` that rebuilds the project's index (for the training job)."""
    config = IndexConfig.from_settings(settings)
    return lambda project_id: rebuild(
        project_id, sessionmaker=sessionmaker, store=store, indexes=indexes, config=config
    )


def describe(
    project: Project, *, store: ArtifactStore, indexes: IndexStore, config: IndexConfig
) -> dict[str, Any]:
    """``GET /projects/{pid}/index``: kind, size, dim, build time, measured recall@10.

    Raises:
        InvalidInput: the pool is empty.
    """
    index = current_index(project, store=store, indexes=indexes, config=config)
    _, meta = _read(store, project.id)
    return {
        **meta,
        "kind": index.kind,
        "size": index.ntotal,
        "dim": index.dim,
        "search_params": index.search_params(),
    }


def search(
    session: Session,
    project: Project,
    body: SearchRequest,
    *,
    store: ArtifactStore,
    indexes: IndexStore,
    embedders: EmbedderCache,
    config: IndexConfig,
) -> dict[str, Any]:
    """Nearest items of an item, a text (text projects) or a vector, most similar first.

    Raises:
        NotFound: the query item is not in this project.
        InvalidInput: text in a non-text project, a vector of the wrong dimension, empty pool.
    """
    index = current_index(project, store=store, indexes=indexes, config=config)
    exclude = -1
    if body.item_id is not None:
        item = session.get(Item, body.item_id)
        if item is None or item.project_id != project.id:
            raise NotFound("item", body.item_id)
        features = store.read_features(project.id, project.pool_size)
        query = np.asarray(features[item.position : item.position + 1], dtype=np.float32)
        exclude = item.position
    elif body.text is not None:
        if project.modality != "text":
            raise InvalidInput("text search needs a text project", field="text")
        query = embedders.embed(project.embedder, [body.text])
    else:
        query = np.asarray([body.vector], dtype=np.float32)
        if query.shape[1] != index.dim:
            raise InvalidInput(
                f"vector has dimension {query.shape[1]}, the index has {index.dim}", field="vector"
            )
    similarities, positions = index.search(query, body.k + (1 if exclude >= 0 else 0))
    keep = (positions[0] >= 0) & (positions[0] != exclude)
    positions, similarities = positions[0][keep][: body.k], similarities[0][keep][: body.k]
    rows = {
        item.position: item
        for item in session.scalars(
            select(Item).where(Item.project_id == project.id, Item.position.in_(positions.tolist()))
        )
    }
    results = [
        {
            "item_id": rows[p].id,
            "external_id": rows[p].external_id,
            "text": rows[p].text,
            "labels": rows[p].labels,
            "label_source": rows[p].label_source,
            "similarity": float(s),
        }
        for p, s in zip(positions.tolist(), similarities.tolist(), strict=True)
        if p in rows
    ]
    return {"kind": index.kind, "size": index.ntotal, "results": results}


def near_duplicates(
    project: Project,
    features: np.ndarray,
    *,
    store: ArtifactStore,
    indexes: IndexStore,
    config: IndexConfig,
    threshold: float,
) -> list[tuple[int, int, float]]:
    """``(row, match_position, similarity)`` for new rows that nearly duplicate an item or an
    earlier row of the batch (positions: pool rows, then ``pool_size + row``)."""
    pool_index = None
    if project.pool_size:
        pool_index = current_index(project, store=store, indexes=indexes, config=config)
    batch_index = None
    if features.shape[0] >= config.exact_below:
        batch_index = VectorIndex.build(
            features,
            exact_below=config.exact_below,
            approximate="hnsw" if config.approximate == "hnsw" else "ivf",
        )
    found = find_near_duplicates(
        features,
        start=project.pool_size,
        threshold=threshold,
        pool_index=pool_index,
        batch_index=batch_index,
    )
    return list(
        zip(
            found.rows.tolist(),
            found.match_positions.tolist(),
            found.similarities.tolist(),
            strict=True,
        )
    )


def flag_near_duplicates(
    session: Session, project: Project, start: int, found: list[tuple[int, int, float]]
) -> list[dict[str, Any]]:
    """After insert: set ``meta.near_duplicate_of`` on the new items and return the report
    ``[{row (1-based), item_id (new), duplicate_of (item id), similarity}]`` (first 1000)."""
    if not found:
        return []
    wanted = sorted({start + row for row, _, _ in found} | {match for _, match, _ in found})
    ids: dict[int, int] = {}
    metas: dict[int, dict[str, Any]] = {}
    for offset in range(0, len(wanted), 500):
        for position, item_id, meta in session.execute(
            select(Item.position, Item.id, Item.meta).where(
                Item.project_id == project.id, Item.position.in_(wanted[offset : offset + 500])
            )
        ).all():
            ids[position] = item_id
            metas[item_id] = meta or {}
    report: list[dict[str, Any]] = []
    updates: list[dict[str, Any]] = []
    for row, match, similarity in found:
        new_id, match_id = ids.get(start + row), ids.get(match)
        if new_id is None or match_id is None:
            continue
        entry = {"item_id": match_id, "similarity": round(float(similarity), 6)}
        updates.append({"id": new_id, "meta": {**metas[new_id], "near_duplicate_of": entry}})
        if len(report) < NEAR_DUPLICATES_REPORTED:
            report.append({"row": row + 1, "new_item_id": new_id, **entry})
    if updates:
        session.execute(update(Item), updates)
    session.flush()
    return report


__all__ = [
    "IndexConfig",
    "after_import",
    "build",
    "current_index",
    "describe",
    "flag_near_duplicates",
    "near_duplicates",
    "on_checkpoint_hook",
    "rebuild",
    "search",
]
