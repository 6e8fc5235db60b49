"""``quarry keys create|list|revoke``: users and API keys from the command line, and the
demo's local admin key. A created key is printed once; only its SHA-256 is stored."""

import argparse
import getpass
import secrets
from pathlib import Path

from app.api.deps import Services
from app.config import get_settings
from app.db import make_engine, make_sessionmaker, transaction
from app.models import Project
from app.services import auth as auth_service

DEMO_KEY_FILE = "demo-admin.key"


def _sessionmaker():  # type: ignore[no-untyped-def]
    from app.migrate import upgrade_to_head

    settings = get_settings()
    upgrade_to_head(settings.database_url)
    return make_sessionmaker(make_engine(settings))


def cmd_keys_create(args: argparse.Namespace) -> int:
    """Create (or reuse) user ``--name`` with ``--role``, join ``--project``s, print a key."""
    from sqlalchemy import select

    from app.models import User

    password = getpass.getpass(f"password for {args.name}: ") if args.password else None
    with transaction(_sessionmaker()) as session:
        user = session.scalar(select(User).where(User.name == args.name))
        if user is None:
            user = auth_service.create_user(
                session, name=args.name, role=args.role, password=password
            )
        elif user.role != args.role:
            print(f"user {args.name!r} exists with role {user.role}")
            return 2
        elif password:
            user.password_hash = auth_service.hash_password(password)
        for pid in args.project or []:
            project = session.get(Project, pid)
            if project is None:
                print(f"there is no project {pid}")
                return 2
            auth_service.add_member(session, project, user)
        row, key = auth_service.create_key(session, user, name=args.key_name or "cli")
        print(f"key {row.id} for {user.name} ({user.role}); shown once:")
        print(key)
    return 0


def cmd_keys_list(_args: argparse.Namespace) -> int:
    """Every key: id, user, role, prefix, name, last use, revoked."""
    with _sessionmaker()() as session:
        for row in auth_service.list_keys(session):
            state = f"revoked {row.revoked_at:%Y-%m-%d}" if row.revoked_at else "active"
            used = f"{row.last_used_at:%Y-%m-%d %H:%M}" if row.last_used_at else "never"
            print(f"{row.id:>5}  {row.user.name:<20} {row.user.role:<10} {row.prefix}…  "
                  f"{row.name:<12} last used {used:<16} {state}")
    return 0


def cmd_keys_revoke(args: argparse.Namespace) -> int:
    """Revoke key ``KEY_ID``."""
    with transaction(_sessionmaker()) as session:
        row = auth_service.revoke_key(session, args.key_id)
        print(f"key {row.id} ({row.prefix}…) revoked")
    return 0


def demo_login_key(services: Services) -> str:
    """The demo's local admin key: read from ``<data_dir>/demo-admin.key`` (0600) or created
    there; ensured as an admin key like QUARRY_BOOTSTRAP_ADMIN_KEY."""
    path = Path(services.settings.data_dir) / DEMO_KEY_FILE
    if path.exists():
        key = path.read_text().strip()
    else:
        key = auth_service.KEY_PREFIX + secrets.token_urlsafe(32)
        path.touch(mode=0o600)
        path.write_text(key + "\n")
    with transaction(services.sessionmaker) as session:
        auth_service.ensure_bootstrap_admin(session, key)
    return key


def add_key_commands(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Register ``quarry keys ...``."""
    keys = sub.add_parser("keys", help="users and API keys")
    keys_sub = keys.add_subparsers(dest="keys_command", required=True)
    create = keys_sub.add_parser("create", help="create a user's API key (printed once)")
    create.add_argument("--name", required=True, help="user name (created when new)")
    create.add_argument("--role", required=True, choices=["admin", "pipeline", "annotator"])
    create.add_argument("--project", type=int, action="append", metavar="PID",
                        help="make the user a member of this project (repeatable)")
    create.add_argument("--password", action="store_true",
                        help="prompt for a UI login password")
    create.add_argument("--key-name", default="", help="a label for the key")
    create.set_defaults(func=cmd_keys_create)
    listing = keys_sub.add_parser("list", help="every key (no secrets)")
    listing.set_defaults(func=cmd_keys_list)
    revoke = keys_sub.add_parser("revoke", help="revoke a key")
    revoke.add_argument("key_id", type=int)
    revoke.set_defaults(func=cmd_keys_revoke)
