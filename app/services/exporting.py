"""Export labels and mined triplets as JSONL, CSV or Parquet."""

import csv
import io
import json
from collections.abc import Iterator
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session, aliased

from app.errors import InvalidInput
from app.models import (
    Annotation,
    Item,
    ItemStatus,
    LabelSource,
    NegativeTriplet,
    Project,
    VerifyStatus,
)

FORMATS = {
    "jsonl": "application/x-ndjson",
    "csv": "text/csv",
    "parquet": "application/vnd.apache.parquet",
}
INCLUDE = {
    "human": (ItemStatus.LABELED,),
    "pseudo": (ItemStatus.PSEUDO,),
    "all": (ItemStatus.LABELED, ItemStatus.PSEUDO),
}


def label_rows(session: Session, project: Project, include: str) -> Iterator[dict[str, Any]]:
    """Current labels: human/imported, pseudo, or both (``include``); pseudo rows also name
    their ``method`` and ``checkpoint_id`` (the active checkpoint, whose pseudo-labels the items
    carry).

    Raises:
        InvalidInput: unknown ``include``.
    """
    if include not in INCLUDE:
        raise InvalidInput(f"include must be one of {sorted(INCLUDE)}", field="include")
    methods = _pseudo_methods(session, project) if include != "human" else {}
    query = (
        select(Item)
        .where(Item.project_id == project.id, Item.status.in_(INCLUDE[include]))
        .order_by(Item.position)
        .execution_options(yield_per=1000)
    )
    for item in session.scalars(query):
        pseudo = item.status == ItemStatus.PSEUDO
        yield {
            "item_id": item.id,
            "external_id": item.external_id,
            "text": item.text,
            "label": (item.labels or [None])[0] if project.task != "multilabel" else None,
            "labels": item.labels,
            "source": item.label_source or LabelSource.HUMAN,
            "confidence": item.label_confidence,
            "method": methods.get(item.id) if pseudo else None,
            "checkpoint_id": project.active_checkpoint_id if pseudo else None,
        }


def _pseudo_methods(session: Session, project: Project) -> dict[int, str | None]:
    """item id -> method of the active checkpoint's pseudo-label (the one items carry)."""
    if project.active_checkpoint_id is None:
        return {}
    rows = session.execute(
        select(Annotation.item_id, Annotation.method).where(
            Annotation.project_id == project.id,
            Annotation.checkpoint_id == project.active_checkpoint_id,
            Annotation.source == LabelSource.PSEUDO,
        )
    )
    return {item_id: method for item_id, method in rows}


def triplet_rows(
    session: Session, project: Project, run_id: int | None, *, verified: bool = False
) -> Iterator[dict[str, Any]]:
    """Mined triplets in sentence-transformers' column layout: anchor, positive, negative.

    ``verified`` keeps only negatives an annotator confirmed.
    """
    anchor, positive, negative = aliased(Item), aliased(Item), aliased(Item)
    query = (
        select(NegativeTriplet, anchor, positive, negative)
        .join(anchor, anchor.id == NegativeTriplet.anchor_item_id)
        .outerjoin(positive, positive.id == NegativeTriplet.positive_item_id)
        .join(negative, negative.id == NegativeTriplet.negative_item_id)
        .where(NegativeTriplet.project_id == project.id)
        .order_by(NegativeTriplet.id)
    )
    if run_id is not None:
        query = query.where(NegativeTriplet.run_id == run_id)
    if verified:
        query = query.where(NegativeTriplet.verify_status == VerifyStatus.NEGATIVE)
    for triplet, a, p, n in session.execute(query):
        yield {
            "anchor": _shown(a),
            "positive": _shown(p) if p is not None else None,
            "negative": _shown(n),
            "anchor_id": a.id,
            "positive_id": p.id if p is not None else None,
            "negative_id": n.id,
            "anchor_negative_score": triplet.anchor_negative_score,
            "anchor_positive_score": triplet.anchor_positive_score,
            "run_id": triplet.run_id,
            "verify_status": triplet.verify_status,
        }


def ntuple_rows(
    session: Session, project: Project, run_id: int, *, n_negatives: int, verified: bool = False
) -> Iterator[dict[str, Any]]:
    """One row per anchor: ``anchor, positive, negative_1 .. negative_n`` (sentence-transformers'
    n-tuple layout), hardest first; anchors with fewer than ``n_negatives`` are left out, as
    sentence-transformers does."""
    rows = list(triplet_rows(session, project, run_id, verified=verified))
    groups: dict[int, list[dict[str, Any]]] = {}
    for row in rows:
        groups.setdefault(row["anchor_id"], []).append(row)
    for anchor_id, group in groups.items():
        if len(group) < n_negatives:
            continue
        group = group[:n_negatives]
        out: dict[str, Any] = {"anchor": group[0]["anchor"], "positive": group[0]["positive"]}
        for i, row in enumerate(group, start=1):
            out[f"negative_{i}"] = row["negative"]
        out["anchor_id"] = anchor_id
        out["positive_id"] = group[0]["positive_id"]
        for i, row in enumerate(group, start=1):
            out[f"negative_{i}_id"] = row["negative_id"]
        out["run_id"] = run_id
        yield out


def _shown(item: Item) -> str:
    return item.text if item.text is not None else item.external_id


def render(rows: Iterator[dict[str, Any]], fmt: str) -> bytes:
    """Serialize rows; list values become ``|``-joined strings in CSV.

    Raises:
        InvalidInput: unknown format.
    """
    if fmt not in FORMATS:
        raise InvalidInput(f"format must be one of {sorted(FORMATS)}", field="format")
    records = list(rows)
    if fmt == "jsonl":
        return "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records).encode()
    if fmt == "csv":
        buffer = io.StringIO()
        if records:
            writer = csv.DictWriter(buffer, fieldnames=list(records[0]))
            writer.writeheader()
            for r in records:
                writer.writerow(
                    {k: "|".join(v) if isinstance(v, list) else v for k, v in r.items()}
                )
        return buffer.getvalue().encode()
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pa.Table.from_pylist(records)
    sink = io.BytesIO()
    pq.write_table(table, sink)
    return sink.getvalue()
