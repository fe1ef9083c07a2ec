"""Bring a database to the newest schema with Alembic, programmatically (no alembic.ini needed)."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy import text

from core.db import make_engine

MIGRATIONS_DIR = Path(__file__).resolve().parent.parent / "migrations"
# Any constant works: it only has to be the same in every process that migrates.
_MIGRATION_LOCK_ID = 7_140_925


def alembic_config() -> Config:
    """An Alembic config pointing at trainctl's migrations, independent of the working directory."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    return config


def upgrade_database(url: str) -> None:
    """Run every migration up to head on the database at `url` (SQLite or PostgreSQL)."""
    if url.startswith("sqlite"):
        _sqlite_parent(url).mkdir(parents=True, exist_ok=True)
    engine = make_engine(url, statement_timeout=None)  # waiting for another process's migration is fine
    try:
        with engine.begin() as connection:
            if connection.dialect.name == "postgresql":
                # Several processes (API, workers) may start at once; one migrates, the others wait.
                connection.execute(text("SELECT pg_advisory_xact_lock(:id)"), {"id": _MIGRATION_LOCK_ID})
            config = alembic_config()
            config.attributes["connection"] = connection
            command.upgrade(config, "head")
    finally:
        engine.dispose()


def _sqlite_parent(url: str) -> Path:
    """The folder of a SQLite file URL (the current folder for in-memory databases)."""
    path = url.split(":///", 1)[1] if ":///" in url else ""
    return Path(path).parent if path and path != ":memory:" else Path(".")
