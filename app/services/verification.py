"""Mined negatives back into the loop: verify them under leases, record verdicts, report the
false-negative rate annotators found per mining run and configuration.

A triplet queued by ``negatives/mine`` with ``enqueue`` asks "is <negative> really not a
<anchor label>?". ``negative`` confirms it (kept as a verified negative, exported with
``verified=true``); ``false_negative`` adds a human label of the anchor's label to the item
through :func:`app.services.labeling.annotate`, so a different existing human label is never
overwritten silently (409 ``label_conflict``).
"""

import hashlib
import json
from datetime import timedelta
from typing import Any

from sqlalchemy import and_, func, select
from sqlalchemy.orm import Session, aliased

from app.errors import Conflict, InvalidInput, NotFound, PoolExhausted
from app.models import Item, MiningRun, NegativeTriplet, Project, VerifyStatus
from app.schemas.labels import AnnotationCreate
from app.schemas.mining import VerdictCreate
from app.services import labeling
from app.services.clock import as_utc
from app.services.queue import now_utc
from app.services.review_leases import take_leases

CONFIG_IGNORED = ("anchors", "seed", "enqueue", "output")
"""Request fields that do not change what a mining configuration mines."""


def next_to_verify(
    session: Session, project: Project, *, annotator: str, n: int, lease_seconds: int
) -> list[dict[str, Any]]:
    """Lease up to ``n`` queued negatives to ``annotator`` (their open leases first).

    A lease is taken with a conditional UPDATE, so two annotators never hold one triplet;
    expired leases return triplets to the queue.

    Raises:
        PoolExhausted: nothing is queued for verification.
    """
    now = now_utc()
    expires = now + timedelta(seconds=lease_seconds)
    queued = and_(
        NegativeTriplet.project_id == project.id,
        NegativeTriplet.verify_status == VerifyStatus.QUEUED,
    )
    held = take_leases(
        session,
        NegativeTriplet,
        eligible=queued,
        guard=queued,
        order_by=(NegativeTriplet.run_id, NegativeTriplet.anchor_item_id, NegativeTriplet.rank),
        annotator=annotator,
        n=n,
        now=now,
        expires=expires,
    )
    if not held:
        raise PoolExhausted("no mined negative is waiting for verification", available=0)
    session.flush()
    session.expire_all()
    return _tasks(session, held)


def _tasks(session: Session, triplet_ids: list[int]) -> list[dict[str, Any]]:
    anchor, positive, negative = aliased(Item), aliased(Item), aliased(Item)
    rows = session.execute(
        select(NegativeTriplet, anchor, positive, negative)
        .join(anchor, anchor.id == NegativeTriplet.anchor_item_id)
        .outerjoin(positive, positive.id == NegativeTriplet.positive_item_id)
        .join(negative, negative.id == NegativeTriplet.negative_item_id)
        .where(NegativeTriplet.id.in_(triplet_ids))
        .order_by(NegativeTriplet.id)
    ).all()
    return [
        {
            "triplet_id": t.id,
            "run_id": t.run_id,
            "label": t.anchor_label,
            "question": f"Is this really not a {t.anchor_label!r}?",
            "anchor": _brief(a),
            "positive": _brief(p) if p is not None else None,
            "negative": _brief(ng),
            "anchor_negative_score": t.anchor_negative_score,
            "lease_expires_at": as_utc(t.lease_expires_at),
        }
        for t, a, p, ng in rows
    ]


def _brief(item: Item) -> dict[str, Any]:
    return {
        "item_id": item.id,
        "external_id": item.external_id,
        "text": item.text,
        "labels": item.labels,
        "label_source": item.label_source,
    }


def record_verdict(
    session: Session, project: Project, triplet_id: int, body: VerdictCreate
) -> dict[str, Any]:
    """Record an annotator's verdict on a mined negative.

    ``false_negative`` labels the negative item with the anchor's label (a human annotation);
    ``negative`` keeps it as a verified negative. Repeating the same verdict is a no-op.

    Raises:
        NotFound: no such triplet in this project.
        InvalidInput: the triplet's anchor has no label to ask about.
        Conflict: another verdict was recorded, or another annotator holds the lease.
        LabelConflict: a false negative whose item has a different human label.
    """
    triplet = session.get(NegativeTriplet, triplet_id, with_for_update=True)
    if triplet is None or triplet.project_id != project.id:
        raise NotFound("mined negative", triplet_id)
    if triplet.anchor_label is None:
        raise InvalidInput("this negative's anchor has no label to verify", field="triplet_id")
    if triplet.verify_status in VerifyStatus.VERDICTS:
        if triplet.verify_status != body.verdict:
            raise Conflict(
                f"verdict {triplet.verify_status!r} was already recorded",
                field="verdict",
                current=triplet.verify_status,
            )
        return _verdict_read(triplet)
    now = now_utc()
    lease_end = as_utc(triplet.lease_expires_at)
    if (
        triplet.leased_by not in (None, body.annotator)
        and lease_end is not None
        and lease_end > now
    ):
        raise Conflict(f"annotator {triplet.leased_by!r} holds this negative", field="annotator")
    if body.verdict == VerifyStatus.FALSE_NEGATIVE:
        annotation, _ = labeling.annotate(
            session,
            project,
            AnnotationCreate(
                item_id=triplet.negative_item_id,
                label=triplet.anchor_label,
                annotator=body.annotator,
            ),
            idempotency_key=None,
        )
        annotation.method = "negative_verification"
        annotation.extra = {"triplet_id": triplet.id, "run_id": triplet.run_id}
        triplet.annotation_id = annotation.id
    triplet.verify_status = body.verdict
    triplet.verdict_annotator = body.annotator
    triplet.verdict_at = now
    triplet.leased_by = None
    triplet.lease_expires_at = None
    session.flush()
    return _verdict_read(triplet)


def _verdict_read(triplet: NegativeTriplet) -> dict[str, Any]:
    return {
        "triplet_id": triplet.id,
        "run_id": triplet.run_id,
        "verdict": triplet.verify_status,
        "annotator": triplet.verdict_annotator,
        "label": triplet.anchor_label,
        "negative_id": triplet.negative_item_id,
        "annotation_id": triplet.annotation_id,
        "decided_at": as_utc(triplet.verdict_at),
    }


def config_of(params: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """(key, configuration): the run's params without anchors, seed, enqueue and output."""
    config = {k: v for k, v in sorted(params.items()) if k not in CONFIG_IGNORED}
    digest = hashlib.sha1(json.dumps(config, sort_keys=True).encode()).hexdigest()[:12]
    return digest, config


def runs_report(session: Session, project: Project) -> dict[str, Any]:
    """Per mining run and per configuration: how many negatives were verified and the
    false-negative rate annotators found (``false_negatives / verified``, None before any)."""
    status = NegativeTriplet.verify_status

    def count(value: str) -> Any:
        return func.count(NegativeTriplet.id).filter(status == value)

    counts = {
        run_id: (queued, negatives, false_negatives)
        for run_id, queued, negatives, false_negatives in session.execute(
            select(
                NegativeTriplet.run_id,
                count(VerifyStatus.QUEUED),
                count(VerifyStatus.NEGATIVE),
                count(VerifyStatus.FALSE_NEGATIVE),
            )
            .where(NegativeTriplet.project_id == project.id)
            .group_by(NegativeTriplet.run_id)
        ).all()
    }
    runs = session.scalars(
        select(MiningRun).where(MiningRun.project_id == project.id).order_by(MiningRun.id)
    ).all()
    reports: list[dict[str, Any]] = []
    configs: dict[str, dict[str, Any]] = {}
    for run in runs:
        queued, negatives, false_negatives = counts.get(run.id, (0, 0, 0))
        verified = negatives + false_negatives
        key, config = config_of(run.params)
        reports.append(
            {
                "run_id": run.id,
                "created_at": as_utc(run.created_at),
                "params": run.params,
                "config_key": key,
                "n_anchors": run.n_anchors,
                "n_triplets": run.n_triplets,
                "dropped": run.dropped,
                "queued": queued,
                "verified": verified,
                "negatives": negatives,
                "false_negatives": false_negatives,
                "false_negative_rate": false_negatives / verified if verified else None,
            }
        )
        entry = configs.setdefault(
            key,
            {"config_key": key, "config": config, "runs": [], "verified": 0, "false_negatives": 0},
        )
        entry["runs"].append(run.id)
        entry["verified"] += verified
        entry["false_negatives"] += false_negatives
    for entry in configs.values():
        verified = entry["verified"]
        entry["false_negative_rate"] = entry["false_negatives"] / verified if verified else None
    return {"runs": reports, "configs": list(configs.values())}
