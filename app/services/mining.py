"""Hard-negative mining over the project's FAISS index; runs and triplets are stored."""

from typing import Any

import numpy as np
from sqlalchemy import insert, select
from sqlalchemy.orm import Session

from app.errors import InvalidInput, ModelNotReady, NotFound
from app.models import Item, MiningRun, NegativeTriplet, Project, VerifyStatus
from app.sampling.hard_negatives import mine_hard_negatives
from app.sampling.index_store import IndexStore
from app.schemas.mining import MineRequest
from app.services import exporting, indexing, pool_view
from app.services.embedding import EmbedderCache
from app.services.indexing import IndexConfig
from app.services.queue import now_utc
from app.storage import ArtifactStore


def mine(
    session: Session,
    project: Project,
    body: MineRequest,
    *,
    store: ArtifactStore,
    indexes: IndexStore,
    embedders: EmbedderCache,
    index_config: IndexConfig,
) -> dict[str, Any]:
    """Mine ``k`` hard negatives per anchor and store them as a mining run.

    Anchors: item ids, every item human-labeled ``label``, or raw texts (text projects).
    Negatives are never items a human labeled with the anchor's label. Positive-only (PU)
    mining, on when only one label has labeled items or when asked, draws negatives from the
    unlabeled items only. With ``enqueue`` the negatives of labeled anchors are queued for
    verification.

    Raises:
        InvalidInput: empty pool, unknown label, no anchors, texts in a non-text project, or
            semi-hard mining without a labeled anchor.
        NotFound: an anchor item id is not in the project.
        ModelNotReady: ``max_predicted_probability`` without an active model.
    """
    if project.pool_size == 0:
        raise InvalidInput("the pool is empty; import items first", field="anchors")
    view = pool_view.load(
        session,
        project,
        store,
        needs=frozenset({"embeddings"}),
        now=now_utc(),
        use_checkpoint=False,
    )
    features = np.asarray(view.embeddings, dtype=np.float32)
    index = indexing.current_index(project, store=store, indexes=indexes, config=index_config)
    anchors = body.anchors
    anchor_texts: list[str] | None = None
    anchor_labels = None
    if anchors.item_ids is not None:
        rows = dict(
            session.execute(
                select(Item.id, Item.position).where(
                    Item.project_id == project.id, Item.id.in_(anchors.item_ids)
                )
            ).all()
        )
        missing = [i for i in anchors.item_ids if i not in rows]
        if missing:
            raise NotFound("item", missing[0])
        anchor_positions = np.array([rows[i] for i in anchors.item_ids], dtype=np.int64)
        vectors = features
    elif anchors.label is not None:
        if anchors.label not in project.labels:
            raise InvalidInput(f"unknown label {anchors.label!r}", field="anchors.label")
        anchor_positions = np.flatnonzero(view.labels == project.labels.index(anchors.label))
        if anchor_positions.size == 0:
            raise InvalidInput(f"no item is labeled {anchors.label!r} yet", field="anchors.label")
        vectors = features
    else:
        if project.modality != "text":
            raise InvalidInput("text anchors need a text project", field="anchors.texts")
        anchor_texts = list(anchors.texts or [])
        extra = embedders.embed(project.embedder, anchor_texts)
        vectors = np.concatenate([features, extra], axis=0)
        anchor_positions = np.arange(features.shape[0], vectors.shape[0], dtype=np.int64)
        anchor_labels = np.full(anchor_positions.size, -1, dtype=np.int64)
    n_extra = vectors.shape[0] - view.labels.shape[0]
    labels = view.labels if body.exclude_same_label else np.full_like(view.labels, -1)
    if n_extra:
        labels = np.concatenate([labels, np.full(n_extra, -1, dtype=np.int64)])
    if anchor_labels is None:
        anchor_labels = view.labels[anchor_positions]
    positive_only = body.positive_only
    if positive_only is None:
        positive_only = np.unique(view.labels[view.labels >= 0]).size == 1
    candidate_mask = None
    if positive_only:
        candidate_mask = np.concatenate([~view.labeled, np.zeros(n_extra, dtype=bool)])
    if body.sampling == "semi-hard" and not (anchor_labels >= 0).any():
        raise InvalidInput(
            "semi-hard mining needs anchors with a human label (the band is set by the positive)",
            field="sampling",
        )
    probs = None
    if body.max_predicted_probability is not None:
        checkpoint = project.active_checkpoint
        probs = pool_view.checkpoint_array(checkpoint, "probs") if checkpoint else None
        if probs is None:
            raise ModelNotReady(
                "max_predicted_probability needs a trained model; train one first",
                field="max_predicted_probability",
            )
    result = mine_hard_negatives(
        index,
        vectors,
        anchor_positions=anchor_positions,
        labels=labels,
        anchor_labels=anchor_labels,
        k=body.k,
        range_min=body.range_min,
        range_max=body.range_max,
        max_similarity=body.max_similarity,
        margin=body.margin,
        exclude_same_label=body.exclude_same_label,
        sampling=body.sampling,
        rng=np.random.default_rng(body.seed),
        relative_margin=body.relative_margin,
        min_similarity=body.min_similarity,
        semi_hard_margin=body.semi_hard_margin,
        candidate_mask=candidate_mask,
        probs=probs,
        max_predicted_probability=body.max_predicted_probability,
        max_candidates=body.max_candidates,
    )
    names = [project.labels[i] if i >= 0 else None for i in result_anchor_labels(anchor_labels)]
    return _store_run(
        session, project, body, view.item_ids, result, anchor_texts, names, positive_only
    )


def result_anchor_labels(anchor_labels: np.ndarray) -> list[int]:
    """Anchor label indexes as plain ints (``-1``: none)."""
    return [int(x) for x in anchor_labels.tolist()]


def _store_run(  # type: ignore[no-untyped-def]
    session, project, body, item_ids, result, anchor_texts, anchor_label_names, positive_only
) -> dict[str, Any]:
    params = body.model_dump(mode="json")
    run = MiningRun(
        project_id=project.id,
        params={**params, "positive_only": bool(positive_only)},
        dropped={k: int(v) for k, v in result.dropped.items()},
        n_anchors=int(result.anchor_positions.size),
        n_triplets=0,
        checkpoint_id=project.active_checkpoint_id,
        created_at=now_utc(),
    )
    session.add(run)
    session.flush()
    n_pool = item_ids.shape[0]
    triplets: list[dict[str, Any]] = []
    tuples: list[dict[str, Any]] = []
    stored: list[dict[str, Any]] = []
    for a, anchor in enumerate(result.anchor_positions.tolist()):
        positive = int(result.positive_positions[a])
        pos_sim = float(result.positive_similarities[a])
        anchor_id = int(item_ids[anchor]) if anchor < n_pool else None
        anchor_text = anchor_texts[anchor - n_pool] if anchor >= n_pool and anchor_texts else None
        positive_id = int(item_ids[positive]) if 0 <= positive < n_pool else None
        positive_score = pos_sim if np.isfinite(pos_sim) else None
        negatives, scores = [], []
        pairs = zip(
            result.negative_positions[a].tolist(),
            result.negative_similarities[a].tolist(),
            strict=True,
        )
        for rank, (negative, sim) in enumerate(pairs):
            if negative < 0:
                continue
            negatives.append(int(item_ids[negative]))
            scores.append(float(sim))
            triplets.append(
                {
                    "anchor_id": anchor_id,
                    "anchor_text": anchor_text,
                    "positive_id": positive_id,
                    "negative_id": negatives[-1],
                    "rank": rank,
                    "anchor_negative_score": float(sim),
                    "anchor_positive_score": positive_score,
                }
            )
            if anchor_id is not None:
                label = anchor_label_names[a]
                stored.append(
                    {
                        "run_id": run.id,
                        "project_id": project.id,
                        "anchor_item_id": anchor_id,
                        "positive_item_id": positive_id,
                        "negative_item_id": negatives[-1],
                        "rank": rank,
                        "anchor_negative_score": float(sim),
                        "anchor_positive_score": positive_score,
                        "anchor_label": label,
                        "verify_status": (
                            VerifyStatus.QUEUED if body.enqueue and label is not None else None
                        ),
                    }
                )
        if negatives:
            tuples.append(
                {
                    "anchor_id": anchor_id,
                    "anchor_text": anchor_text,
                    "positive_id": positive_id,
                    "negative_ids": negatives,
                    "anchor_negative_scores": scores,
                    "anchor_positive_score": positive_score,
                }
            )
    for offset in range(0, len(stored), 1000):
        session.execute(insert(NegativeTriplet), stored[offset : offset + 1000])
    run.n_triplets = len(triplets)
    session.flush()
    return {
        "run_id": run.id,
        "n_anchors": run.n_anchors,
        "triplets": triplets,
        "tuples": tuples if body.output == "n-tuple" else None,
        "dropped": run.dropped,
        "params": run.params,
        "positive_only": bool(positive_only),
        "enqueued": sum(1 for t in stored if t["verify_status"] == VerifyStatus.QUEUED),
        "created_at": run.created_at,
    }


def get_run(session: Session, project: Project, run_id: int) -> MiningRun:
    """A mining run of this project, or NotFound."""
    run = session.get(MiningRun, run_id)
    if run is None or run.project_id != project.id:
        raise NotFound("mining run", run_id)
    return run


def export_negatives(
    session: Session,
    project: Project,
    *,
    fmt: str,
    run_id: int | None,
    output: str | None,
    verified: bool,
) -> bytes:
    """Mined negatives as JSONL/CSV/Parquet in sentence-transformers' column layout.

    ``output`` defaults to the run's (``triplet`` without a run): ``triplet`` gives ``anchor,
    positive, negative`` rows; ``n-tuple`` gives ``anchor, positive, negative_1 .. negative_k``
    per anchor of one run (anchors with fewer than ``k`` negatives are left out).

    Raises:
        NotFound: unknown run.
        InvalidInput: ``n-tuple`` without ``run_id``, or an unknown format.
    """
    run = get_run(session, project, run_id) if run_id is not None else None
    chosen = output or (run.params.get("output", "triplet") if run is not None else "triplet")
    if chosen == "n-tuple":
        if run is None:
            raise InvalidInput(
                "n-tuple export needs run_id (k varies between runs)", field="run_id"
            )
        rows = exporting.ntuple_rows(
            session, project, run.id, n_negatives=int(run.params.get("k", 10)), verified=verified
        )
    else:
        rows = exporting.triplet_rows(session, project, run_id, verified=verified)
    return exporting.render(rows, fmt)
