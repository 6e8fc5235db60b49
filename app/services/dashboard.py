"""The project dashboard in one read: labels over time, class balance, the learning curve of
the checkpoints, jobs, annotator throughput and inter-annotator agreement.

Labels are the effective human annotations (retractions and retracted rows left out, see
:mod:`app.services.review`). Agreement is measured on items that two or more annotators
labeled, each annotator's latest label per item, as the share of annotator pairs that gave the
same label set and as Cohen's kappa per annotator pair (Cohen 1960, "A coefficient of agreement
for nominal scales"; ``sklearn.metrics.cohen_kappa_score``).
"""

import json
from collections import defaultdict
from datetime import UTC, datetime
from itertools import combinations
from typing import Any

import numpy as np
import numpy.typing as npt
from sklearn.metrics import cohen_kappa_score
from sqlalchemy import String, cast, func, select
from sqlalchemy.orm import Session

from app.models import (
    Annotation,
    Checkpoint,
    Item,
    ItemStatus,
    Job,
    JobStatus,
    LabelSource,
    Project,
)
from app.services import projects as project_service
from app.services import review
from app.services.clock import as_utc

BUCKETS_SECONDS = (60, 300, 900, 3600, 6 * 3600, 86400, 7 * 86400)
"""Candidate widths of a "labels over time" bucket; the smallest giving <= MAX_BUCKETS wins."""
MAX_BUCKETS = 60
IDLE_GAP_SECONDS = 300.0
"""A pause longer than this between two labels of one annotator is not counted as work."""
RECENT_JOBS = 5


def dashboard(
    session: Session, project: Project, *, bucket_seconds: int | None = None
) -> dict[str, Any]:
    """Everything the dashboard page shows, as JSON-ready values."""
    rows = session.execute(
        select(Annotation.item_id, Annotation.annotator, Annotation.labels, Annotation.created_at)
        .where(review.is_effective(project.id), Annotation.source == LabelSource.HUMAN)
        .order_by(Annotation.id)
    ).all()
    times = np.array([as_utc(r.created_at).timestamp() for r in rows], dtype=np.float64)
    return {
        "counts": project_service.project_counts(session, project),
        "labels_over_time": labels_over_time(times, bucket_seconds=bucket_seconds),
        "class_balance": class_balance(session, project),
        "learning_curve": learning_curve(session, project),
        "jobs": _jobs(session, project),
        "annotators": annotator_throughput(
            [r.annotator or "anonymous" for r in rows], times
        ),
        "agreement": agreement(
            [(r.item_id, r.annotator or "anonymous", r.labels or []) for r in rows]
        ),
        "model_disagreements": review.count_disagreements(session, project),
    }


def labels_over_time(
    times: npt.NDArray[np.float64], *, bucket_seconds: int | None = None
) -> dict[str, Any]:
    """Human labels per time bucket.

    Args:
        times: ``[n]`` label times, seconds since the epoch (UTC), any order.
        bucket_seconds: bucket width; default the smallest of ``BUCKETS_SECONDS`` that covers
            the span in at most ``MAX_BUCKETS`` buckets.

    Returns:
        ``{"bucket_seconds", "buckets": [{"start": ISO time, "labels", "cumulative"}]}``,
        buckets aligned to multiples of the width, empty ones included.
    """
    if times.size == 0:
        return {"bucket_seconds": bucket_seconds or BUCKETS_SECONDS[0], "buckets": []}
    first, last = float(times.min()), float(times.max())
    if bucket_seconds is None:
        fits = [b for b in BUCKETS_SECONDS if (last - first) / b < MAX_BUCKETS]
        bucket_seconds = fits[0] if fits else BUCKETS_SECONDS[-1]
    index = np.floor(times / bucket_seconds).astype(np.int64)  # [n]
    start = int(index.min())
    counts = np.bincount(index - start)  # [n_buckets]
    cumulative = np.cumsum(counts)
    return {
        "bucket_seconds": bucket_seconds,
        "buckets": [
            {
                "start": datetime.fromtimestamp((start + i) * bucket_seconds, UTC).isoformat(),
                "labels": int(n),
                "cumulative": int(c),
            }
            for i, (n, c) in enumerate(zip(counts, cumulative, strict=True))
        ],
    }


def class_balance(session: Session, project: Project) -> list[dict[str, Any]]:
    """Current labels per class and source: ``[{label, human, imported, pseudo}]``."""
    balance = {name: dict.fromkeys(LabelSource.ALL, 0) for name in project.labels}
    grouped = session.execute(
        select(Item.label_source, cast(Item.labels, String), func.count())
        .where(
            Item.project_id == project.id,
            Item.status.in_([ItemStatus.LABELED, ItemStatus.PSEUDO]),
        )
        .group_by(Item.label_source, cast(Item.labels, String))
    ).all()
    for source, labels_json, n in grouped:
        for name in json.loads(labels_json) if labels_json else []:
            if name in balance and source in LabelSource.ALL:
                balance[name][source] += int(n)
    return [{"label": name, **counts} for name, counts in balance.items()]


def learning_curve(session: Session, project: Project) -> list[dict[str, Any]]:
    """Each checkpoint's validation accuracy against the labels it was trained on, oldest
    first: ``[{version, n_labeled, n_pseudo, accuracy, macro_f1, active, created_at}]``."""
    rows = session.scalars(
        select(Checkpoint).where(Checkpoint.project_id == project.id).order_by(Checkpoint.version)
    ).all()
    return [
        {
            "version": row.version,
            "n_labeled": row.n_labeled,
            "n_pseudo": row.n_pseudo,
            "accuracy": row.metrics.get("accuracy"),
            "macro_f1": row.metrics.get("macro_f1"),
            "active": row.id == project.active_checkpoint_id,
            "created_at": row.created_at,
        }
        for row in rows
    ]


def _jobs(session: Session, project: Project) -> list[Job]:
    """Queued and running jobs, then the latest finished ones."""
    active = session.scalars(
        select(Job)
        .where(Job.project_id == project.id, Job.status.in_([JobStatus.QUEUED, JobStatus.RUNNING]))
        .order_by(Job.id.desc())
    ).all()
    recent = session.scalars(
        select(Job)
        .where(Job.project_id == project.id, Job.status.in_(JobStatus.FINISHED))
        .order_by(Job.id.desc())
        .limit(RECENT_JOBS)
    ).all()
    return [*active, *recent]


def annotator_throughput(
    annotators: list[str], times: npt.NDArray[np.float64]
) -> list[dict[str, Any]]:
    """Labels per annotator and their pace.

    Active time is the sum of the gaps between an annotator's consecutive labels, leaving out
    gaps above ``IDLE_GAP_SECONDS`` (breaks); ``labels_per_hour`` is the labels after the first
    of each working stretch divided by that time.

    Args:
        annotators: ``[n]`` annotator of each label.
        times: ``[n]`` label times in seconds (same order).

    Returns:
        ``[{annotator, labels, first_at, last_at, active_seconds, labels_per_hour,
        median_seconds_per_label}]``, most labels first.
    """
    by_name: dict[str, list[float]] = defaultdict(list)
    for name, moment in zip(annotators, times.tolist(), strict=True):
        by_name[name].append(moment)
    out = []
    for name, moments in by_name.items():
        stamps = np.sort(np.asarray(moments, dtype=np.float64))
        gaps = np.diff(stamps)
        working = gaps[gaps <= IDLE_GAP_SECONDS]
        active = float(working.sum())
        out.append(
            {
                "annotator": name,
                "labels": int(stamps.size),
                "first_at": datetime.fromtimestamp(stamps[0], UTC),
                "last_at": datetime.fromtimestamp(stamps[-1], UTC),
                "active_seconds": active,
                "labels_per_hour": working.size * 3600.0 / active if active > 0 else None,
                "median_seconds_per_label": float(np.median(working)) if working.size else None,
            }
        )
    return sorted(out, key=lambda r: (-r["labels"], r["annotator"]))


def agreement(labels: list[tuple[int, str, list[str]]]) -> dict[str, Any]:
    """Inter-annotator agreement on items labeled by two or more annotators.

    Args:
        labels: ``(item_id, annotator, labels)`` in time order; an annotator's last label of an
            item counts.

    Returns:
        ``{"n_items", "pairwise_agreement", "pairs": [{a, b, n_items, agreement, kappa}],
        "by_annotator": [{annotator, n_items, agreement}]}``: ``pairwise_agreement`` is the share
        of (item, annotator pair) comparisons with the same label set (None without any);
        ``kappa`` is Cohen's kappa of the pair (None when it is undefined: fewer than two
        distinct labels between them).
    """
    latest: dict[int, dict[str, str]] = defaultdict(dict)
    for item_id, name, given in labels:
        latest[item_id][name] = "|".join(sorted(given))
    shared = {item: by for item, by in latest.items() if len(by) >= 2}
    pair_labels: dict[tuple[str, str], tuple[list[str], list[str]]] = defaultdict(lambda: ([], []))
    person: dict[str, list[bool]] = defaultdict(list)
    for by in shared.values():
        for a, b in combinations(sorted(by), 2):
            first, second = pair_labels[(a, b)]
            first.append(by[a])
            second.append(by[b])
        for name, own in by.items():
            person[name].append(all(own == other for n, other in by.items() if n != name))
    pairs = []
    same_total = n_total = 0
    for (a, b), (first, second) in sorted(pair_labels.items()):
        same = sum(x == y for x, y in zip(first, second, strict=True))
        same_total, n_total = same_total + same, n_total + len(first)
        kappa = None
        if len(set(first) | set(second)) >= 2:
            kappa = float(cohen_kappa_score(first, second))
        pairs.append(
            {"a": a, "b": b, "n_items": len(first), "agreement": same / len(first), "kappa": kappa}
        )
    return {
        "n_items": len(shared),
        "pairwise_agreement": same_total / n_total if n_total else None,
        "pairs": pairs,
        "by_annotator": [
            {"annotator": name, "n_items": len(flags), "agreement": float(np.mean(flags))}
            for name, flags in sorted(person.items())
        ],
    }
