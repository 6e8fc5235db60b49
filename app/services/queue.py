"""The annotation queue: a ranking per (project, checkpoint, pool size), served under leases.

A ranking is computed once by the project's queue strategy (or a model-free cold start when no
checkpoint is active) and cached in memory; ``/next`` walks it, skipping items that were labeled
or are leased meanwhile, and recomputes it when it runs dry. A lease is taken with a conditional
UPDATE (``lease_expires_at`` null or past), so two annotators never hold one item, whatever
process serves them.
"""

import threading
import uuid
from collections import OrderedDict
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt
from sqlalchemy import or_, select, text, update
from sqlalchemy.orm import Session

from app.errors import PoolExhausted
from app.models import Item, ItemStatus, Lease, LeaseStatus, Project, QueueRanking
from app.services import pool_view
from app.services.clock import now_utc
from app.storage import ArtifactStore
from app.strategies.registry import StrategyRegistry

if TYPE_CHECKING:
    from app.services.queue_refresh import RankingRefresher

RANKING_SIZE = 200
REFILL_BELOW = RANKING_SIZE // 4
"""Free items left in a ranking below which ``/next`` asks for a fresh one in the background."""
COLD_WAIT_SECONDS = 60.0
"""How long a ``/next`` without any ranking waits for the background computation."""


@dataclass(frozen=True)
class Ranking:
    """Positions best first, their scores, and how they were picked."""

    item_ids: npt.NDArray[np.int64]
    scores: npt.NDArray[np.float64]
    strategy: str
    checkpoint_id: int | None
    seed: int


class RankingCache:
    """In-memory LRU of queue rankings keyed by (project, checkpoint, pool size, strategy).

    Besides the keyed entries it keeps each project's most recently stored ranking
    (:meth:`latest`), which ``/next`` serves while the ranking of a new key (a new checkpoint,
    a grown pool) is computed in the background. Thread-safe.
    """

    def __init__(self, max_entries: int = 64) -> None:
        self._entries: OrderedDict[tuple[object, ...], Ranking] = OrderedDict()
        self._latest: OrderedDict[int, Ranking] = OrderedDict()
        self._lock = threading.Lock()
        self._max = max_entries

    def get(self, key: tuple[object, ...]) -> Ranking | None:
        with self._lock:
            ranking = self._entries.get(key)
            if ranking is not None:
                self._entries.move_to_end(key)
            return ranking

    def put(self, key: tuple[object, ...], ranking: Ranking) -> None:
        project_id = key[0]
        assert isinstance(project_id, int)
        with self._lock:
            self._entries[key] = ranking
            self._entries.move_to_end(key)
            while len(self._entries) > self._max:
                self._entries.popitem(last=False)
            self._latest[project_id] = ranking
            self._latest.move_to_end(project_id)
            while len(self._latest) > self._max:
                self._latest.popitem(last=False)

    def latest(self, project_id: int) -> Ranking | None:
        """The project's most recently stored ranking, whatever its key (or None)."""
        with self._lock:
            return self._latest.get(project_id)

    def retire(self, project_id: int) -> None:
        """Drop the project's keyed rankings but keep :meth:`latest` to serve meanwhile (a
        retrain activated a checkpoint: the old ranking stays usable until the new one is
        ready)."""
        with self._lock:
            for key in [k for k in self._entries if k[0] == project_id]:
                del self._entries[key]

    def invalidate(self, project_id: int) -> None:
        """Drop every ranking of a project, :meth:`latest` included (on demand re-rank, a
        changed strategy, a ranking that ran dry): the next ``/next`` computes a fresh one."""
        with self._lock:
            for key in [k for k in self._entries if k[0] == project_id]:
                del self._entries[key]
            self._latest.pop(project_id, None)


@dataclass(frozen=True)
class QueueDeps:
    """What the queue needs besides the session."""

    store: ArtifactStore
    strategies: StrategyRegistry
    rankings: RankingCache
    lease_seconds: int
    cold_start_strategy: str
    refresher: "RankingRefresher | None" = None


def release_expired(session: Session, project: Project, now: datetime) -> None:
    """Return items whose lease expired to the queue and mark those leases expired.

    Found through the leases table (indexed by project; every lease an item holds has a row
    there), so the check costs the number of leases, not the pool size; the item's own
    ``lease_expires_at`` decides.
    """
    expired = session.scalars(
        select(Lease.id)
        .join(Item, Item.id == Lease.item_id)
        .where(
            Lease.project_id == project.id,
            Lease.status == LeaseStatus.ACTIVE,
            Item.lease_id == Lease.id,
            Item.lease_expires_at <= now,
        )
    ).all()
    if not expired:
        return
    session.execute(
        update(Item)
        .where(Item.lease_id.in_(expired), Item.lease_expires_at <= now)
        .values(lease_id=None, leased_by=None, lease_expires_at=None)
    )
    session.execute(
        update(Lease)
        .where(Lease.id.in_(expired), Lease.status == LeaseStatus.ACTIVE)
        .values(status=LeaseStatus.EXPIRED, closed_at=now)
    )


def compute_ranking(
    session: Session, project: Project, deps: QueueDeps, now: datetime, *, reason: str = "auto"
) -> tuple[Ranking, QueueRanking]:
    """A fresh ranking of the project's queue and its (unsaved) ``QueueRanking`` record.

    Reads only (the caller adds the record): safe in a read-only transaction.

    Raises:
        PoolExhausted: every item is labeled or leased.
        ModelNotReady, StrategyFailed: from the queue strategy.
    """
    checkpoint = project.active_checkpoint
    name = project.queue_strategy if checkpoint is not None else deps.cold_start_strategy
    strategy = deps.strategies.create(name, {})
    if checkpoint is None and "probs" in strategy.requires:
        name, strategy = "random", deps.strategies.create("random", {})
    view = pool_view.load(session, project, deps.store, needs=strategy.requires, now=now)
    seed = int(now.timestamp()) % (2**31)
    n = min(RANKING_SIZE, view.n_unlabeled)
    if n == 0:
        raise PoolExhausted("every item is labeled or leased", available=0)
    selection = strategy.select(view, n, np.random.default_rng(seed))
    finite = selection.scores[np.isfinite(selection.scores)]
    record = QueueRanking(  # the stopping signal "top acquisition score over time"
        project_id=project.id,
        checkpoint_id=view.checkpoint_id,
        strategy=name,
        reason=reason,
        size=int(selection.positions.size),
        top_score=float(finite.max()) if finite.size else None,
        mean_score=float(finite.mean()) if finite.size else None,
        n_unlabeled=int(view.n_unlabeled),
        created_at=now,
    )
    ranking = Ranking(
        item_ids=view.item_ids[selection.positions],
        scores=selection.scores,
        strategy=name,
        checkpoint_id=view.checkpoint_id,
        seed=seed,
    )
    return ranking, record


def _compute_ranking(
    session: Session, project: Project, deps: QueueDeps, now: datetime, *, reason: str = "auto"
) -> Ranking:
    ranking, record = compute_ranking(session, project, deps, now, reason=reason)
    session.add(record)
    return ranking


def ranking_key(project: Project) -> tuple[object, ...]:
    """The cache key of the project's current ranking: (project, active checkpoint, pool size,
    queue strategy); any change means the ranking must be recomputed."""
    return (project.id, project.active_checkpoint_id, project.pool_size, project.queue_strategy)


def rerank(session: Session, project: Project, *, deps: QueueDeps) -> Ranking:
    """Recompute the project's queue ranking now (on demand) and record it.

    Raises:
        PoolExhausted: every item is labeled or leased.
        ModelNotReady, StrategyFailed: from the queue strategy.
    """
    now = now_utc()
    release_expired(session, project, now)
    deps.rankings.invalidate(project.id)
    ranking = _compute_ranking(session, project, deps, now, reason="rerank")
    deps.rankings.put(ranking_key(project), ranking)
    session.flush()
    return ranking


def lease_next(
    session: Session, project: Project, *, annotator: str, n: int, deps: QueueDeps
) -> list[Lease]:
    """Lease up to ``n`` items to ``annotator``: their open leases first, then new ones.

    Raises:
        PoolExhausted: nothing is left to label (every item labeled or leased).
    """
    now = now_utc()
    release_expired(session, project, now)
    leases = list(
        session.scalars(
            select(Lease)
            .where(
                Lease.project_id == project.id,
                Lease.annotator == annotator,
                Lease.status == LeaseStatus.ACTIVE,
                Lease.expires_at > now,
            )
            .order_by(Lease.created_at, Lease.rank)
            .limit(n)
        ).all()
    )
    for _attempt in range(3):
        if len(leases) >= n:
            break
        key = ranking_key(project)
        ranking = deps.rankings.get(key)
        if ranking is None and deps.refresher is not None:
            ranking = deps.rankings.latest(project.id)  # serve it while the new one computes
            if ranking is not None:
                _refresh_after_commit(session, deps.refresher, project.id, key)
            else:  # cold: one computation (the refresher's), however many requests wait
                deps.refresher.request(project.id, key)
                deps.refresher.wait_for(key, timeout=COLD_WAIT_SECONDS)
                ranking = deps.rankings.get(key)  # None if it failed: computed inline below
        if ranking is None:
            try:
                ranking = _compute_ranking(session, project, deps, now)
            except PoolExhausted:
                if leases:
                    break  # fewer than n left: serve what we have
                raise
            deps.rankings.put(key, ranking)
        claimed, left = _claim(session, project, ranking, annotator, n - len(leases), now, deps)
        leases += claimed
        if len(leases) < n:
            deps.rankings.invalidate(project.id)  # ran dry: re-rank over what is left
        elif deps.refresher is not None and left < REFILL_BELOW:
            # running low: refill off the request path, once this claim is committed (so the
            # new ranking sees it)
            _refresh_after_commit(session, deps.refresher, project.id, key)
    if not leases:
        raise PoolExhausted("every item is labeled or leased", available=0)
    session.flush()
    return leases


def _refresh_after_commit(
    session: Session, refresher: "RankingRefresher", project_id: int, key: tuple[object, ...]
) -> None:
    session.info.setdefault("after_commit", []).append(lambda: refresher.request(project_id, key))


def _claim(
    session: Session,
    project: Project,
    ranking: Ranking,
    annotator: str,
    n: int,
    now: datetime,
    deps: QueueDeps,
) -> tuple[list[Lease], int]:
    """Lease up to ``n`` free items of ``ranking`` in rank order; returns the leases and how
    many free items of the ranking are left after them."""
    expires = now + timedelta(seconds=deps.lease_seconds)
    ranked = ranking.item_ids.tolist()
    if session.get_bind().dialect.name == "postgresql":
        taken, n_free = _claim_postgresql(session, project, ranked, annotator, n, now, expires)
    else:
        taken, n_free = _claim_one_by_one(session, project, ranked, annotator, n, now, expires)
    rank_of = {item_id: rank for rank, item_id in enumerate(ranked)}
    claimed: list[Lease] = []
    for item_id, lease_id in sorted(taken, key=lambda pair: rank_of[pair[0]]):
        rank = rank_of[item_id]
        score = ranking.scores[rank]
        lease = Lease(
            id=lease_id,
            project_id=project.id,
            item_id=item_id,
            annotator=annotator,
            strategy=ranking.strategy,
            score=None if not np.isfinite(score) else float(score),
            rank=rank,
            checkpoint_id=ranking.checkpoint_id,
            seed=ranking.seed,
            status=LeaseStatus.ACTIVE,
            created_at=now,
            expires_at=expires,
        )
        session.add(lease)
        claimed.append(lease)
    return claimed, n_free - len(claimed)


# One round trip, whatever the ranking's length: the ids travel as one array parameter (an
# IN-list of 200 parameters is re-parsed by the driver on every call), the free items are
# locked in rank order skipping rows another transaction holds (a concurrent claim, a label, a
# retrain's write-back) instead of waiting for them, and each gets a fresh 32-hex lease id.
# ``picked`` repeats the conditions: a row claimed by a transaction that committed after this
# statement's snapshot is re-checked when it is locked, and skipped for the next one.
_CLAIM_POSTGRESQL = text(
    """
    WITH free AS (
        SELECT id FROM items
        WHERE id = ANY(CAST(:ranked AS BIGINT[]))
          AND status <> :labeled
          AND (lease_expires_at IS NULL OR lease_expires_at <= :now)
          AND id NOT IN (
              SELECT item_id FROM leases
              WHERE project_id = :project_id AND annotator = :annotator AND status = :skipped)
    ),
    picked AS (
        SELECT id FROM items
        WHERE id IN (SELECT id FROM free)
          AND status <> :labeled
          AND (lease_expires_at IS NULL OR lease_expires_at <= :now)
        ORDER BY array_position(CAST(:ranked AS BIGINT[]), CAST(id AS BIGINT))
        LIMIT :n
        FOR UPDATE SKIP LOCKED
    ),
    claimed AS (
        UPDATE items
        SET lease_id = replace(CAST(gen_random_uuid() AS TEXT), '-', ''),
            leased_by = :annotator, lease_expires_at = :expires
        WHERE id IN (SELECT id FROM picked)
          AND status <> :labeled
          AND (lease_expires_at IS NULL OR lease_expires_at <= :now)
        RETURNING id, lease_id
    )
    SELECT (SELECT count(*) FROM free) AS n_free, claimed.id, claimed.lease_id
    FROM (SELECT 1) AS one LEFT JOIN claimed ON true
    """
)


def _claim_postgresql(
    session: Session,
    project: Project,
    ranked: list[int],
    annotator: str,
    n: int,
    now: datetime,
    expires: datetime,
) -> tuple[list[tuple[int, str]], int]:
    rows = session.execute(
        _CLAIM_POSTGRESQL,
        {
            "ranked": ranked,
            "labeled": ItemStatus.LABELED,
            "now": now,
            "project_id": project.id,
            "annotator": annotator,
            "skipped": LeaseStatus.SKIPPED,
            "n": n,
            "expires": expires,
        },
    ).all()
    taken = [(int(row.id), str(row.lease_id)) for row in rows if row.id is not None]
    return taken, int(rows[0].n_free) if rows else 0


def _claim_one_by_one(
    session: Session,
    project: Project,
    ranked: list[int],
    annotator: str,
    n: int,
    now: datetime,
    expires: datetime,
) -> tuple[list[tuple[int, str]], int]:
    """SQLite (one writer at a time): read the free items, then a conditional UPDATE each."""
    claimable = (
        Item.status != ItemStatus.LABELED,
        or_(Item.lease_expires_at.is_(None), Item.lease_expires_at <= now),
    )
    free = set(
        session.scalars(
            select(Item.id).where(
                Item.id.in_(ranked),
                *claimable,
                Item.id.not_in(
                    select(Lease.item_id).where(
                        Lease.project_id == project.id,
                        Lease.annotator == annotator,
                        Lease.status == LeaseStatus.SKIPPED,
                    )
                ),
            )
        ).all()
    )
    taken: list[tuple[int, str]] = []
    for item_id in ranked:
        if len(taken) >= n:
            break
        if item_id not in free:
            continue
        lease_id = uuid.uuid4().hex
        result = session.execute(
            update(Item)
            .where(Item.id == item_id, *claimable)
            .values(lease_id=lease_id, leased_by=annotator, lease_expires_at=expires)
            .execution_options(synchronize_session=False)
        )
        if result.rowcount == 1:  # type: ignore[attr-defined]
            taken.append((item_id, lease_id))
    return taken, len(free)


def close_lease(
    session: Session, lease_id: str, status: str, now: datetime, *, item: Item | None = None
) -> Lease | None:
    """Mark a lease completed/skipped and free its item; returns the lease if it existed.

    ``item``: the lease's item, already loaded and locked by the caller; it is freed through
    its attributes (written with the caller's next flush) instead of an UPDATE of its own.
    """
    lease = session.get(Lease, lease_id)
    if lease is None:
        return None
    if lease.status == LeaseStatus.ACTIVE:
        lease.status = status
        lease.closed_at = now
    if item is not None:
        if item.lease_id == lease_id:
            item.lease_id = None
            item.leased_by = None
            item.lease_expires_at = None
        return lease
    session.execute(
        update(Item)
        .where(Item.id == lease.item_id, Item.lease_id == lease_id)
        .values(lease_id=None, leased_by=None, lease_expires_at=None)
        .execution_options(synchronize_session=False)
    )
    return lease


def read_ranking(ranking: Ranking) -> dict[str, object]:
    """API view of a ranking (the head of the queue)."""
    finite = ranking.scores[np.isfinite(ranking.scores)]
    return {
        "strategy": ranking.strategy,
        "checkpoint_id": ranking.checkpoint_id,
        "seed": ranking.seed,
        "size": int(ranking.item_ids.size),
        "top_score": float(finite.max()) if finite.size else None,
        "head": [
            {"item_id": int(i), "rank": r, "score": float(s) if np.isfinite(s) else None}
            for r, (i, s) in enumerate(zip(ranking.item_ids[:10], ranking.scores[:10], strict=True))
        ],
    }
