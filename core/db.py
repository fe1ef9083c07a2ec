"""Engine, sessions and the declarative Base (with a naming convention so migrations are stable)."""

from __future__ import annotations

import math
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import MetaData, create_engine, event, text
from sqlalchemy.engine import Engine, make_url
from sqlalchemy.orm import DeclarativeBase, Session, sessionmaker

from core.config import Settings

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    """Base of every table."""

    metadata = MetaData(naming_convention=NAMING_CONVENTION)


def utcnow() -> datetime:
    """Timezone-aware now, in UTC."""
    return datetime.now(UTC)


def make_engine(url: str, *, connect_timeout: float = 5.0, statement_timeout: float | None = 15.0) -> Engine:
    """An engine tuned per backend: SQLite gets WAL, a busy timeout and foreign keys.

    Timeouts on both backends, so that a hung database is a prompt error (503), not a hung request:
    connecting and waiting for a pooled connection take at most `connect_timeout` seconds, one
    statement (PostgreSQL) or one wait for a lock (SQLite) at most `statement_timeout`.
    """
    if url.startswith("sqlite"):
        busy = statement_timeout if statement_timeout is not None else 30.0
        engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": busy})

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA synchronous=NORMAL")
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.close()

        return engine
    connect_args: dict[str, Any] = {"connect_timeout": max(1, math.ceil(connect_timeout))}
    if statement_timeout is not None:
        connect_args["options"] = f"-c statement_timeout={math.ceil(statement_timeout * 1000)}"
    return create_engine(
        url,
        pool_pre_ping=True,
        pool_size=10,
        max_overflow=20,
        pool_timeout=connect_timeout,
        connect_args=connect_args,
    )


def engine_for(settings: Settings) -> Engine:
    """The engine of the configured database, with the configured timeouts."""
    return make_engine(
        settings.resolved_database_url,
        connect_timeout=settings.database_connect_timeout,
        statement_timeout=settings.database_statement_timeout,
    )


def make_session_factory(engine: Engine) -> sessionmaker[Session]:
    """Sessions that keep loaded attributes after commit (services return schemas built from them)."""
    return sessionmaker(engine, expire_on_commit=False)


@contextmanager
def scratch_database(server_url: str, prefix: str = "trainctl_scratch") -> Iterator[str]:
    """A fresh, uniquely named PostgreSQL database on the server, dropped afterwards (tests, benchmarks)."""
    server = make_url(server_url)
    name = f"{prefix}_{uuid.uuid4().hex[:12]}"
    admin = create_engine(server, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as connection:
            connection.execute(text(f'CREATE DATABASE "{name}"'))
    except BaseException:
        admin.dispose()
        raise
    try:
        yield server.set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as connection:
            connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@contextmanager
def session_scope(factory: sessionmaker[Session]) -> Iterator[Session]:
    """A session that commits on success and rolls back on error."""
    session = factory()
    try:
        yield session
        session.commit()
    except BaseException:
        session.rollback()
        raise
    finally:
        session.close()
