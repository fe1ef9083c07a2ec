"""The worker waits out an unreachable database (real connection errors) but not a broken schema."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.exc import OperationalError

from worker.context import with_db_retry


def test_connection_errors_are_retried_until_the_database_answers(tmp_path: Path) -> None:
    unreachable = create_engine("postgresql+psycopg://postgres@127.0.0.1:1/nowhere?connect_timeout=1")
    reachable = create_engine(f"sqlite:///{tmp_path / 'ok.db'}")
    calls = []

    def write() -> int:
        calls.append(1)
        engine = unreachable if len(calls) < 3 else reachable  # the database comes back on the third try
        with engine.connect() as connection:
            return int(connection.execute(text("SELECT 42")).scalar_one())

    assert with_db_retry(write, give_up_after=30) == 42
    assert len(calls) == 3


def test_gives_up_after_its_deadline_and_never_retries_a_missing_table(tmp_path: Path) -> None:
    unreachable = create_engine("postgresql+psycopg://postgres@127.0.0.1:1/nowhere?connect_timeout=1")
    with pytest.raises(OperationalError):
        with_db_retry(lambda: unreachable.connect().close(), give_up_after=0.3)
    broken = create_engine(f"sqlite:///{tmp_path / 'empty.db'}")
    calls = []

    def read_missing_table() -> None:
        calls.append(1)
        with broken.connect() as connection:
            connection.execute(text("SELECT * FROM job"))

    with pytest.raises(OperationalError):
        with_db_retry(read_missing_table, give_up_after=30)
    assert len(calls) == 1
