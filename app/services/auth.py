"""Users, API keys, project membership and UI sessions.

Secrets are stored only as hashes: API keys and session/CSRF tokens as SHA-256 (they are
high-entropy ``secrets.token_urlsafe`` values, so a fast hash suffices), passwords with
``hashlib.scrypt`` (RFC 7914; n=2**14, r=8, p=1, 16-byte per-user salt). Every comparison of a
secret-derived value uses ``hmac.compare_digest``.
"""

import hashlib
import hmac
import itertools
import secrets
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import timedelta

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from app.errors import Conflict, InvalidInput, NotFound, Unauthorized
from app.models import ApiKey, Project, ProjectMember, UiSession, User
from app.models.auth import ROLES
from app.models.base import utcnow
from app.services.clock import as_utc

KEY_PREFIX = "qk_"
MIN_BOOTSTRAP_KEY_CHARS = 24
BOOTSTRAP_USER = "admin"
SESSION_HOURS = 12
LAST_USED_RESOLUTION = timedelta(minutes=1)
SCRYPT = {"n": 2**14, "r": 8, "p": 1}


@dataclass(frozen=True)
class Principal:
    """Who is calling: ``via`` is "key" or "session" (only sessions need a CSRF token)."""

    user_id: int
    name: str
    role: str
    via: str
    projects: frozenset[int] = field(default_factory=frozenset)

    @property
    def is_admin(self) -> bool:
        return self.role == "admin"

    def may_use(self, project_id: int) -> bool:
        """Admins use every project; others only those they are members of."""
        return self.is_admin or project_id in self.projects


_changes = itertools.count(1)
_generation = 0  # bumped after every committed change to keys, members or sessions


def _bump_generation() -> None:
    global _generation
    _generation = next(_changes)


def auth_changed(session: Session) -> None:
    """Invalidate every :class:`PrincipalCache` of this process once ``session`` commits
    (a revoked key, a membership or a logout takes effect on the next request)."""
    hooks = session.info.setdefault("after_commit", [])
    if _bump_generation not in hooks:
        hooks.append(_bump_generation)


class PrincipalCache:
    """Principals by credential digest (SHA-256 of a key or session token) for ``ttl`` seconds.

    Saves the per-request key, user and membership reads (a transaction of their own). Changes
    made through this process (:func:`auth_changed`) invalidate it at once; a change made by
    another process (``quarry keys revoke``, a second API process) is seen within ``ttl``
    seconds. ``ttl`` 0 disables it. At most ``max_entries`` principals (oldest dropped).
    Thread-safe.
    """

    def __init__(self, ttl: float = 5.0, max_entries: int = 4096) -> None:
        self.ttl = ttl
        self._max = max_entries
        self._entries: dict[bytes, tuple[Principal, float, int]] = {}
        self._lock = threading.Lock()

    def get(self, digest: bytes) -> Principal | None:
        """The cached principal of ``digest``, or None (absent, expired, or invalidated)."""
        if self.ttl <= 0:
            return None
        with self._lock:
            entry = self._entries.get(digest)
        if entry is None:
            return None
        principal, expires, generation = entry
        if generation != _generation or time.monotonic() >= expires:
            return None
        return principal

    def put(self, digest: bytes, principal: Principal) -> None:
        """Cache ``principal`` for ``ttl`` seconds from now."""
        if self.ttl <= 0:
            return
        with self._lock:
            if len(self._entries) >= self._max:
                self._entries.pop(next(iter(self._entries)))
            self._entries[digest] = (principal, time.monotonic() + self.ttl, _generation)


class LoginThrottle:
    """Failed ``/login`` attempts per client address: after ``limit`` failures within
    ``window`` seconds the address is refused (HTTP 429) until the oldest one ages out, which
    bounds password guessing to ``limit`` tries per window per address (OWASP Authentication
    Cheat Sheet, "Login Throttling"). In memory, per API process. Thread-safe.
    """

    def __init__(self, limit: int = 10, window: float = 300.0) -> None:
        self.limit, self.window = limit, window
        self._failures: dict[str, list[float]] = {}
        self._lock = threading.Lock()

    def retry_after(self, client: str) -> float:
        """Seconds until ``client`` may try again (0: it may now)."""
        now = time.monotonic()
        with self._lock:
            recent = [t for t in self._failures.get(client, []) if now - t < self.window]
            if recent:
                self._failures[client] = recent
            else:
                self._failures.pop(client, None)
            if len(recent) < self.limit:
                return 0.0
            return self.window - (now - recent[-self.limit])

    def failed(self, client: str) -> None:
        """Record a failed attempt of ``client``."""
        with self._lock:
            if len(self._failures) > 100_000:  # a flood of addresses: forget the oldest
                self._failures.pop(next(iter(self._failures)))
            self._failures.setdefault(client, []).append(time.monotonic())


def sha256(secret: str) -> bytes:
    """SHA-256 digest (32 bytes) of a UTF-8 secret."""
    return hashlib.sha256(secret.encode("utf-8")).digest()


def hash_password(password: str) -> str:
    """``scrypt$n$r$p$salt_hex$hash_hex`` of ``password`` with a fresh 16-byte salt."""
    salt = secrets.token_bytes(16)
    digest = hashlib.scrypt(password.encode("utf-8"), salt=salt, dklen=32, **SCRYPT)
    return f"scrypt${SCRYPT['n']}${SCRYPT['r']}${SCRYPT['p']}${salt.hex()}${digest.hex()}"


def verify_password(password: str, stored: str | None) -> bool:
    """Whether ``password`` matches a ``hash_password`` string (False for None/malformed)."""
    if not stored:
        return False
    try:
        scheme, n, r, p, salt_hex, digest_hex = stored.split("$")
        if scheme != "scrypt":
            return False
        digest = hashlib.scrypt(
            password.encode("utf-8"), salt=bytes.fromhex(salt_hex), n=int(n), r=int(r),
            p=int(p), dklen=32,
        )
    except ValueError:
        return False
    return hmac.compare_digest(digest, bytes.fromhex(digest_hex))


def _check_password(password: str) -> None:
    if len(password) < 8:
        raise InvalidInput("a password needs at least 8 characters", field="password")


def create_user(
    session: Session, *, name: str, role: str, password: str | None = None
) -> User:
    """Insert a user.

    Raises:
        InvalidInput: unknown role, or a password under 8 characters.
        Conflict: the name is taken.
    """
    if role not in ROLES:
        raise InvalidInput(f"role must be one of {', '.join(ROLES)}", field="role")
    if password is not None:
        _check_password(password)
    if session.scalar(select(User.id).where(User.name == name)) is not None:
        raise Conflict(f"a user named {name!r} exists", field="name")
    user = User(name=name, role=role, disabled=False,
                password_hash=hash_password(password) if password else None)
    session.add(user)
    session.flush()
    return user


def list_users(session: Session) -> Sequence[User]:
    """Every user, oldest first."""
    return session.scalars(select(User).order_by(User.id)).all()


def get_user(session: Session, user_id: int) -> User:
    """The user or NotFound."""
    user = session.get(User, user_id)
    if user is None:
        raise NotFound("user", user_id)
    return user


def create_key(
    session: Session, user: User, *, name: str = "", secret: str | None = None
) -> tuple[ApiKey, str]:
    """A new API key for ``user``: returns the row and the key (shown once, never stored).

    ``secret`` (bootstrap only) uses a given key instead of ``qk_`` + 32 random bytes.
    """
    key = secret or KEY_PREFIX + secrets.token_urlsafe(32)
    row = ApiKey(user_id=user.id, prefix=key[:8], secret_hash=sha256(key), name=name)
    session.add(row)
    session.flush()
    return row, key


def revoke_key(session: Session, key_id: int) -> ApiKey:
    """Mark a key revoked (idempotent). Raises NotFound."""
    row = session.get(ApiKey, key_id)
    if row is None:
        raise NotFound("key", key_id)
    if row.revoked_at is None:
        row.revoked_at = utcnow()
        auth_changed(session)
    return row


def list_keys(session: Session, user_id: int | None = None) -> Sequence[ApiKey]:
    """API keys (of one user), oldest first."""
    stmt = select(ApiKey).order_by(ApiKey.id)
    if user_id is not None:
        stmt = stmt.where(ApiKey.user_id == user_id)
    return session.scalars(stmt).all()


def member_projects(session: Session, user_id: int) -> frozenset[int]:
    """Ids of the projects ``user_id`` is a member of."""
    rows = session.scalars(select(ProjectMember.project_id).where(ProjectMember.user_id == user_id))
    return frozenset(rows)


def principal_of(session: Session, user: User, via: str) -> Principal:
    """The request principal of an enabled user."""
    return Principal(user.id, user.name, user.role, via, member_projects(session, user.id))


def user_of_key(session: Session, key: str) -> User:
    """The enabled user owning an unrevoked ``key``; refreshes ``last_used_at`` (minute
    resolution, so a hot key does not write on every request).

    Raises:
        Unauthorized: unknown, revoked, or its user disabled.
    """
    digest = sha256(key)
    row = session.scalar(select(ApiKey).where(ApiKey.secret_hash == digest))
    if row is None or not hmac.compare_digest(row.secret_hash, digest):
        raise Unauthorized("unknown API key")
    if row.revoked_at is not None:
        raise Unauthorized("this API key is revoked")
    if row.user.disabled:
        raise Unauthorized("this user is disabled")
    now = utcnow()
    last = as_utc(row.last_used_at)
    if last is None or now - last > LAST_USED_RESOLUTION:
        row.last_used_at = now
    return row.user


def ensure_bootstrap_admin(session: Session, secret: str) -> User:
    """Make ``secret`` an admin key of user ``admin`` (created if missing); idempotent.

    Raises:
        InvalidInput: ``secret`` is shorter than 24 characters.
    """
    if len(secret) < MIN_BOOTSTRAP_KEY_CHARS:
        raise InvalidInput(
            f"QUARRY_BOOTSTRAP_ADMIN_KEY needs at least {MIN_BOOTSTRAP_KEY_CHARS} characters",
            field="bootstrap_admin_key",
        )
    row = session.scalar(select(ApiKey).where(ApiKey.secret_hash == sha256(secret)))
    if row is not None:
        if row.user.role != "admin":
            raise Conflict(
                "the bootstrap key belongs to a non-admin user", field="bootstrap_admin_key"
            )
        row.revoked_at = None
        row.user.disabled = False
        return row.user
    user = session.scalar(select(User).where(User.name == BOOTSTRAP_USER))
    if user is None:
        user = create_user(session, name=BOOTSTRAP_USER, role="admin")
    elif user.role != "admin":
        raise Conflict(f"user {BOOTSTRAP_USER!r} exists and is not an admin",
                       field="bootstrap_admin_key")
    create_key(session, user, name="bootstrap", secret=secret)
    return user


def add_member(session: Session, project: Project, user: User) -> ProjectMember:
    """Make ``user`` a member of ``project`` (idempotent)."""
    row = session.scalar(select(ProjectMember).where(
        ProjectMember.project_id == project.id, ProjectMember.user_id == user.id))
    if row is None:
        row = ProjectMember(project_id=project.id, user_id=user.id)
        session.add(row)
        session.flush()
        auth_changed(session)
    return row


def remove_member(session: Session, project: Project, user_id: int) -> None:
    """End a membership. Raises NotFound when there is none."""
    result = session.execute(delete(ProjectMember).where(
        ProjectMember.project_id == project.id, ProjectMember.user_id == user_id))
    if not result.rowcount:  # type: ignore[attr-defined]
        raise NotFound("member", user_id)
    auth_changed(session)


def members_of(session: Session, project: Project) -> Sequence[User]:
    """The member users of a project."""
    return session.scalars(
        select(User).join(ProjectMember, ProjectMember.user_id == User.id)
        .where(ProjectMember.project_id == project.id).order_by(User.id)
    ).all()


def login(
    session: Session, *, name: str | None, password: str | None, key: str | None
) -> tuple[User, str, str]:
    """Start a UI session from name+password or an API key.

    Returns:
        ``(user, session_token, csrf_token)``; only their SHA-256 is stored.

    Raises:
        Unauthorized: wrong credentials or a disabled user (one message for all).
    """
    user: User | None
    if key:
        user = user_of_key(session, key)
    else:
        user = session.scalar(select(User).where(User.name == (name or "")))
        ok = verify_password(password or "", user.password_hash if user else None)
        if user is None or not ok or user.disabled:
            raise Unauthorized("wrong name or password")
    token = secrets.token_urlsafe(32)
    session.add(UiSession(
        token_hash=sha256(token), user_id=user.id,
        expires_at=utcnow() + timedelta(hours=SESSION_HOURS),
    ))
    session.flush()
    return user, token, csrf_token(token)


def user_of_session(session: Session, token: str) -> tuple[User, UiSession]:
    """The user of an unexpired session cookie. Raises Unauthorized."""
    row = session.scalar(select(UiSession).where(UiSession.token_hash == sha256(token)))
    if row is None:
        raise Unauthorized("no such session; log in again")
    if as_utc(row.expires_at) <= utcnow() or row.user.disabled:
        raise Unauthorized("the session expired; log in again")
    return row.user, row


def csrf_token(session_token: str) -> str:
    """The CSRF token bound to a session cookie: hex HMAC-SHA256(token, "csrf"). Pages get it
    in ``<meta name="csrf-token">``; a cross-site page can read neither."""
    return hmac.new(session_token.encode("utf-8"), b"csrf", hashlib.sha256).hexdigest()


def csrf_matches(session_token: str, csrf: str | None) -> bool:
    """Whether header value ``csrf`` is the CSRF token of ``session_token``."""
    return bool(csrf) and hmac.compare_digest(csrf_token(session_token), csrf or "")


def logout(session: Session, token: str) -> None:
    """Delete the session row of a cookie token (no error when absent)."""
    session.execute(delete(UiSession).where(UiSession.token_hash == sha256(token)))
    auth_changed(session)

