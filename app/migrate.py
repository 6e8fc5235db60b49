"""Run Alembic migrations programmatically (``quarry db upgrade``, tests, the demo)."""

from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy import make_url

ROOT = Path(__file__).resolve().parent.parent


def alembic_config(database_url: str) -> Config:
    """Alembic config pointing at this package's migrations and ``database_url``."""
    cfg = Config(str(ROOT / "alembic.ini"))
    cfg.set_main_option("script_location", str(ROOT / "migrations"))
    cfg.set_main_option("sqlalchemy.url", database_url.replace("%", "%%"))
    return cfg


def upgrade_to_head(database_url: str) -> None:
    """Apply every migration to ``database_url`` (creating an SQLite file's folder)."""
    url = make_url(database_url)
    if url.get_backend_name() == "sqlite" and url.database:
        Path(url.database).parent.mkdir(parents=True, exist_ok=True)
    command.upgrade(alembic_config(database_url), "head")


def downgrade(database_url: str, revision: str = "-1") -> None:
    """Step back to ``revision``."""
    command.downgrade(alembic_config(database_url), revision)
