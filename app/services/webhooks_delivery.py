"""Send the webhook outbox: sign, POST, retry with backoff, give up after max attempts.

Each attempt is claimed with a conditional UPDATE (``pending`` and due, or a ``delivering``
claim older than the stale cutoff, moves to ``delivering`` with this claim's timestamp), so
any number of API and worker processes can run :func:`deliver_due` at once and each attempt
is sent by one of them. The result is written only if the claim is still ours.

Signature (the scheme of Stripe's webhooks): ``X-Quarry-Signature: sha256=<hex>`` where hex is
``HMAC-SHA256(secret, f"{timestamp}.{body}")`` and ``timestamp`` is ``X-Quarry-Timestamp``
(Unix seconds). Retry delay after attempt ``a``: ``d = min(max, base * 2**(a-1))``, sent after
``d/2 + uniform(0, d/2)`` seconds ("equal jitter", AWS Architecture Blog, *Exponential
Backoff and Jitter*, 2015).
"""

import hashlib
import hmac
import json
import logging
import random
import threading
import time
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import httpx
from sqlalchemy import and_, or_, select, update
from sqlalchemy.orm import Session, sessionmaker

from app.config import Settings
from app.models import DeliveryStatus, WebhookDelivery, WebhookSubscription
from app.services.queue import now_utc

log = logging.getLogger(__name__)

BATCH = 50
USER_AGENT = "Quarry-Webhooks/1"


def sign(secret: str, timestamp: int, body: bytes) -> str:
    """``sha256=<hex>``: HMAC-SHA256 with key ``secret`` over ``b"<timestamp>." + body``."""
    message = str(timestamp).encode() + b"." + body
    return "sha256=" + hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()


def verify(secret: str, timestamp: str, body: bytes, signature: str, *,
           tolerance_seconds: float = 300.0, now: float | None = None) -> bool:
    """Receiver side: the signature matches and the timestamp is within the tolerance."""
    try:
        ts = int(timestamp)
    except ValueError:
        return False
    current = time.time() if now is None else now
    if abs(current - ts) > tolerance_seconds:
        return False
    return hmac.compare_digest(sign(secret, ts, body), signature)


def backoff_seconds(attempts: int, settings: Settings, rng: random.Random | None = None) -> float:
    """Delay before attempt ``attempts + 1`` (seconds; equal jitter, see module doc)."""
    cap = min(settings.webhook_backoff_max_seconds,
              settings.webhook_backoff_seconds * 2 ** max(0, attempts - 1))
    return cap / 2 + (rng or random).uniform(0, cap / 2)


def body_of(row: WebhookDelivery, project_id: int) -> bytes:
    """The JSON body sent for a delivery (compact, sorted keys, UTF-8)."""
    envelope = {
        "id": row.id, "event": row.event, "event_id": row.event_id, "project_id": project_id,
        "created_at": row.created_at.isoformat(), "data": row.payload,
    }
    return json.dumps(envelope, separators=(",", ":"), sort_keys=True).encode()


@dataclass(frozen=True)
class Attempt:
    """The outcome of one attempt: ``status`` is the row's new status."""

    delivery_id: int
    status: str
    status_code: int | None
    error: str | None


def deliver_due(
    sm: sessionmaker[Session], settings: Settings, *, client: httpx.Client | None = None,
    limit: int = BATCH,
) -> list[Attempt]:
    """Claim up to ``limit`` due deliveries and send each once; returns what happened."""
    own = client is None
    http = client or httpx.Client(
        timeout=settings.webhook_timeout_seconds, follow_redirects=False,
        headers={"User-Agent": USER_AGENT},
    )
    try:
        return [a for a in (_attempt(sm, settings, http, i) for i in _due_ids(sm, settings, limit))
                if a is not None]
    finally:
        if own:
            http.close()


def _claimable(now: datetime, settings: Settings) -> Any:
    stale = now - timedelta(seconds=3 * settings.webhook_timeout_seconds + 60)
    return or_(
        and_(WebhookDelivery.status == DeliveryStatus.PENDING,
             or_(WebhookDelivery.next_attempt_at.is_(None),
                 WebhookDelivery.next_attempt_at <= now)),
        and_(WebhookDelivery.status == DeliveryStatus.DELIVERING,
             WebhookDelivery.claimed_at < stale),
    )


def _due_ids(sm: sessionmaker[Session], settings: Settings, limit: int) -> list[int]:
    with sm() as session:
        return list(session.scalars(
            select(WebhookDelivery.id).where(_claimable(now_utc(), settings))
            .order_by(WebhookDelivery.id).limit(limit)
        ).all())


def _attempt(
    sm: sessionmaker[Session], settings: Settings, http: httpx.Client, delivery_id: int
) -> Attempt | None:
    claimed_at = now_utc()
    with sm() as session, session.begin():
        won = session.execute(
            update(WebhookDelivery)
            .where(WebhookDelivery.id == delivery_id, _claimable(claimed_at, settings))
            .values(status=DeliveryStatus.DELIVERING, claimed_at=claimed_at,
                    attempts=WebhookDelivery.attempts + 1)
        ).rowcount == 1  # type: ignore[attr-defined]
        if not won:
            return None
        row = session.get(WebhookDelivery, delivery_id)
        if row is None:
            return None
        subscription = session.get(WebhookSubscription, row.subscription_id)
        if subscription is None:
            return None
        body, attempts = body_of(row, subscription.project_id), row.attempts
        url, secret, event = subscription.url, subscription.secret, row.event
    timestamp = int(time.time())
    headers = {
        "Content-Type": "application/json", "X-Quarry-Event": event,
        "X-Quarry-Delivery": str(delivery_id), "X-Quarry-Timestamp": str(timestamp),
        "X-Quarry-Signature": sign(secret, timestamp, body),
    }
    code: int | None = None
    error: str | None = None
    try:
        response = http.post(url, content=body, headers=headers)
        code = response.status_code
        if not 200 <= code < 300:
            error = f"HTTP {code}: {response.text[:300]}"
    except httpx.HTTPError as exc:
        error = f"{type(exc).__name__}: {exc}"[:500]
    return _record(sm, settings, delivery_id, claimed_at, attempts, code, error)


def _record(sm: sessionmaker[Session], settings: Settings, delivery_id: int,
            claimed_at: datetime, attempts: int, code: int | None, error: str | None) -> Attempt:
    now = now_utc()
    values: dict[str, Any] = {"last_status_code": code, "last_error": error, "claimed_at": None}
    if error is None:
        values |= {"status": DeliveryStatus.DELIVERED, "delivered_at": now,
                   "next_attempt_at": None}
    elif attempts >= settings.webhook_max_attempts:
        values |= {"status": DeliveryStatus.FAILED, "next_attempt_at": None}
    else:
        delay = backoff_seconds(attempts, settings)
        values |= {"status": DeliveryStatus.PENDING,
                   "next_attempt_at": now + timedelta(seconds=delay)}
    with sm() as session, session.begin():
        session.execute(
            update(WebhookDelivery)
            .where(WebhookDelivery.id == delivery_id,
                   WebhookDelivery.status == DeliveryStatus.DELIVERING,
                   WebhookDelivery.claimed_at == claimed_at)
            .values(**values)
        )
    if error is not None:
        log.warning("webhook delivery %s attempt %s: %s", delivery_id, attempts, error)
    return Attempt(delivery_id, str(values["status"]), code, error)


class DeliveryLoop:
    """A daemon thread running :func:`deliver_due` every ``settings.webhook_poll_seconds``."""

    def __init__(self, sm: sessionmaker[Session], settings: Settings) -> None:
        self._sm, self._settings = sm, settings
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="quarry-webhooks", daemon=True)

    def start(self) -> None:
        """Start the thread."""
        self._thread.start()

    def stop(self) -> None:
        """Stop after the current pass."""
        self._stop.set()
        self._thread.join(timeout=self._settings.webhook_timeout_seconds + 10)

    def _run(self) -> None:
        with httpx.Client(timeout=self._settings.webhook_timeout_seconds,
                          follow_redirects=False, headers={"User-Agent": USER_AGENT}) as http:
            while not self._stop.wait(self._settings.webhook_poll_seconds):
                try:
                    deliver_due(self._sm, self._settings, client=http)
                except Exception:  # noqa: BLE001 - the loop must survive a DB hiccup
                    log.exception("webhook delivery pass failed")
