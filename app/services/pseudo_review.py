"""Pseudo-labels back to annotators: route a share for confirmation, serve them under leases,
record accept/reject verdicts, report each checkpoint's confirmed precision.

A review asks "is <item> a <pseudo-label>?". ``accept`` adds a human annotation of the
pseudo-label through :func:`app.services.labeling.annotate` (method ``pseudo_confirmation``),
so a different existing human label is never overwritten silently (409 ``label_conflict``).
``reject`` records the verdict, withdraws the pseudo-label from the item if it still carries
it, and with a corrected ``label`` adds that as a human annotation. The routed pseudo-labels
are a seeded uniform sample of the checkpoint's, so ``accepted / (accepted + rejected)`` is an
unbiased estimate of the precision of all of them (given with a 95% Wilson interval).
"""

import math
from datetime import timedelta
from typing import Any

import numpy as np
from sqlalchemy import and_, case, func, insert, select
from sqlalchemy.orm import Session

from app.errors import Conflict, InvalidInput, NotFound, PoolExhausted
from app.ml.metrics import wilson_interval
from app.models import (
    Annotation,
    Checkpoint,
    Item,
    ItemStatus,
    LabelSource,
    Project,
    PseudoLabelReview,
    ReviewStatus,
)
from app.schemas.labels import AnnotationCreate
from app.schemas.pseudo_labels import PseudoVerdictCreate
from app.services import labeling
from app.services.clock import as_utc
from app.services.queue import now_utc
from app.services.review_leases import take_leases

METHOD = "pseudo_confirmation"


def route_for_confirmation(
    session: Session, *, project_id: int, checkpoint_id: int, share: float, max_n: int, seed: int
) -> int:
    """Queue ``min(max_n, ceil(share * n_pseudo))`` of the checkpoint's pseudo-labels for review.

    The sample is uniform without replacement, drawn with ``numpy.random.default_rng((seed,
    checkpoint_id))`` over the checkpoint's pseudo annotations in id order, so it is
    reproducible. Returns the number queued.
    """
    rows = session.execute(
        select(
            Annotation.id,
            Annotation.item_id,
            Annotation.labels,
            Annotation.confidence,
            Annotation.method,
        )
        .where(
            Annotation.project_id == project_id,
            Annotation.checkpoint_id == checkpoint_id,
            Annotation.source == LabelSource.PSEUDO,
        )
        .order_by(Annotation.id)
    ).all()
    n_route = min(int(max_n), math.ceil(share * len(rows))) if share > 0 else 0
    if n_route <= 0:
        return 0
    rng = np.random.default_rng((int(seed), int(checkpoint_id)))
    chosen = np.sort(rng.choice(len(rows), size=n_route, replace=False))
    now = now_utc()
    session.execute(
        insert(PseudoLabelReview),
        [
            {
                "project_id": project_id,
                "checkpoint_id": checkpoint_id,
                "item_id": rows[i].item_id,
                "pseudo_annotation_id": rows[i].id,
                "labels": rows[i].labels,
                "confidence": rows[i].confidence,
                "method": rows[i].method,
                "status": ReviewStatus.QUEUED,
                "created_at": now,
            }
            for i in chosen.tolist()
        ],
    )
    return n_route


def next_to_confirm(
    session: Session, project: Project, *, annotator: str, n: int, lease_seconds: int
) -> list[dict[str, Any]]:
    """Lease up to ``n`` queued reviews to ``annotator``: their open leases first, then the
    active checkpoint's, then newer checkpoints'. Items a human has labeled since are skipped.

    A lease is taken with a conditional UPDATE, so two annotators never hold one review;
    expired leases return reviews to the queue.

    Raises:
        PoolExhausted: nothing is waiting for confirmation.
    """
    now = now_utc()
    expires = now + timedelta(seconds=lease_seconds)
    R = PseudoLabelReview  # noqa: N806 - short alias for the table
    queued = and_(R.project_id == project.id, R.status == ReviewStatus.QUEUED)
    not_labeled = R.item_id.in_(
        select(Item.id).where(Item.project_id == project.id, Item.status != ItemStatus.LABELED)
    )
    active_first = case((R.checkpoint_id == project.active_checkpoint_id, 0), else_=1)
    held = take_leases(
        session,
        R,
        eligible=and_(queued, not_labeled),
        guard=queued,
        order_by=(active_first, R.checkpoint_id.desc(), R.id),
        annotator=annotator,
        n=n,
        now=now,
        expires=expires,
    )
    if not held:
        raise PoolExhausted("no pseudo-label is waiting for confirmation", available=0)
    session.flush()
    session.expire_all()
    return _tasks(session, held)


def _tasks(session: Session, review_ids: list[int]) -> list[dict[str, Any]]:
    rows = session.execute(
        select(PseudoLabelReview, Item, Checkpoint.version)
        .join(Item, Item.id == PseudoLabelReview.item_id)
        .join(Checkpoint, Checkpoint.id == PseudoLabelReview.checkpoint_id)
        .where(PseudoLabelReview.id.in_(review_ids))
        .order_by(PseudoLabelReview.id)
    ).all()
    return [
        {
            "review_id": r.id,
            "checkpoint_id": r.checkpoint_id,
            "model_version": version,
            "method": r.method,
            "label": ", ".join(r.labels),
            "labels": r.labels,
            "confidence": r.confidence,
            "question": f"Is this a {', '.join(r.labels)!r}?",
            "item": {
                "item_id": item.id,
                "external_id": item.external_id,
                "text": item.text,
                "labels": item.labels,
                "label_source": item.label_source,
            },
            "lease_expires_at": as_utc(r.lease_expires_at),
        }
        for r, item, version in rows
    ]


def record_verdict(
    session: Session, project: Project, review_id: int, body: PseudoVerdictCreate
) -> dict[str, Any]:
    """Record an annotator's verdict on a routed pseudo-label.

    Repeating the same verdict is a no-op that returns the first one.

    Raises:
        NotFound: no such review in this project.
        InvalidInput: ``label`` with ``accept``, or a correction equal to the pseudo-label.
        Conflict: another verdict was recorded, or another annotator holds the lease.
        LabelConflict: the item has a different human label (accept or correction).
    """
    review = session.get(PseudoLabelReview, review_id, with_for_update=True)
    if review is None or review.project_id != project.id:
        raise NotFound("pseudo-label review", review_id)
    verdict = ReviewStatus.ACCEPTED if body.verdict == "accept" else ReviewStatus.REJECTED
    if review.status in ReviewStatus.VERDICTS:
        if review.status != verdict:
            raise Conflict(
                f"verdict {review.status!r} was already recorded",
                field="verdict",
                current=review.status,
            )
        return _verdict_read(review)
    if body.label is not None and verdict == ReviewStatus.ACCEPTED:
        raise InvalidInput(
            "label corrects a rejected pseudo-label; accept takes none", field="label"
        )
    if body.label is not None and [body.label] == review.labels:
        raise InvalidInput(
            "the correction equals the pseudo-label; accept it instead", field="label"
        )
    now = now_utc()
    lease_end = as_utc(review.lease_expires_at)
    if review.leased_by not in (None, body.annotator) and lease_end is not None and lease_end > now:
        raise Conflict(f"annotator {review.leased_by!r} holds this review", field="annotator")
    human_labels = (
        review.labels
        if verdict == ReviewStatus.ACCEPTED
        else ([body.label] if body.label is not None else None)
    )
    if human_labels is not None:
        annotation, _ = labeling.annotate(
            session,
            project,
            AnnotationCreate(item_id=review.item_id, labels=human_labels, annotator=body.annotator),
            idempotency_key=None,
        )
        annotation.method = METHOD
        annotation.extra = {
            "review_id": review.id,
            "checkpoint_id": review.checkpoint_id,
            "verdict": verdict,
        }
        review.human_annotation_id = annotation.id
    else:
        _withdraw_pseudo_label(session, review)
    review.status = verdict
    review.corrected_labels = [body.label] if body.label is not None else None
    review.verdict_annotator = body.annotator
    review.verdict_at = now
    review.leased_by = None
    review.lease_expires_at = None
    session.flush()
    return _verdict_read(review)


def _withdraw_pseudo_label(session: Session, review: PseudoLabelReview) -> None:
    """A rejected pseudo-label no longer stands on its item (the history keeps it)."""
    item = session.get(Item, review.item_id)
    if item is not None and item.status == ItemStatus.PSEUDO and item.labels == review.labels:
        item.status = ItemStatus.UNLABELED
        item.labels = None
        item.label_source = None
        item.label_confidence = None


def _verdict_read(review: PseudoLabelReview) -> dict[str, Any]:
    return {
        "review_id": review.id,
        "item_id": review.item_id,
        "checkpoint_id": review.checkpoint_id,
        "verdict": "accept" if review.status == ReviewStatus.ACCEPTED else "reject",
        "annotator": review.verdict_annotator,
        "label": ", ".join(review.labels),
        "corrected_label": review.corrected_labels[0] if review.corrected_labels else None,
        "annotation_id": review.human_annotation_id,
        "decided_at": as_utc(review.verdict_at),
    }


def confirmation_counts(session: Session, project_id: int) -> dict[int, dict[str, Any]]:
    """Per checkpoint id: ``{routed, queued, accepted, rejected, precision, precision_low,
    precision_high}`` (precision None before any verdict)."""
    status = PseudoLabelReview.status

    def count(value: str) -> Any:
        return func.count(PseudoLabelReview.id).filter(status == value)

    out: dict[int, dict[str, Any]] = {}
    for checkpoint_id, routed, queued, accepted, rejected in session.execute(
        select(
            PseudoLabelReview.checkpoint_id,
            func.count(PseudoLabelReview.id),
            count(ReviewStatus.QUEUED),
            count(ReviewStatus.ACCEPTED),
            count(ReviewStatus.REJECTED),
        )
        .where(PseudoLabelReview.project_id == project_id)
        .group_by(PseudoLabelReview.checkpoint_id)
    ).all():
        out[checkpoint_id] = summarize(routed, queued, accepted, rejected)
    return out


def summarize(routed: int, queued: int, accepted: int, rejected: int) -> dict[str, Any]:
    """Counts plus the confirmed precision and its 95% Wilson interval."""
    decided = accepted + rejected
    interval = wilson_interval(accepted, decided)
    return {
        "routed": routed,
        "queued": queued,
        "accepted": accepted,
        "rejected": rejected,
        "precision": accepted / decided if decided else None,
        "precision_low": interval[0] if interval else None,
        "precision_high": interval[1] if interval else None,
    }


def precision_report(session: Session, project: Project) -> dict[str, Any]:
    """Every checkpoint, newest first, with the confirmed precision of its pseudo-labels."""
    counts = confirmation_counts(session, project.id)
    rows = session.scalars(
        select(Checkpoint)
        .where(Checkpoint.project_id == project.id)
        .order_by(Checkpoint.version.desc())
    ).all()
    empty = summarize(0, 0, 0, 0)
    return {
        "checkpoints": [
            {
                "checkpoint_id": row.id,
                "version": row.version,
                "active": row.id == project.active_checkpoint_id,
                "method": (row.metrics or {}).get("pseudo_method"),
                "n_pseudo": row.n_pseudo,
                **counts.get(row.id, empty),
            }
            for row in rows
        ]
    }
