"""A hung database is a prompt 503 with Retry-After on both backends, not a request that hangs."""

from __future__ import annotations

import socket
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient

from core.config import Settings
from core.migrate import upgrade_database
from training.spec import EXAMPLE_SPEC

CONNECT_TIMEOUT_S = 1.0
STATEMENT_TIMEOUT_S = 1.0
PROMPT_S = 6.0  # psycopg waits at least 2 s to connect; everything else must be quick


class SilentServer:
    """A TCP server that accepts connections and never answers (a hung database host)."""

    def __init__(self) -> None:
        self.socket = socket.create_server(("127.0.0.1", 0))
        self.port = self.socket.getsockname()[1]
        self.connections: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                connection, _ = self.socket.accept()
            except OSError:
                return
            self.connections.append(connection)

    def close(self) -> None:
        for connection in self.connections:
            connection.close()
        self.socket.close()


@pytest.fixture
def silent_server() -> Iterator[SilentServer]:
    server = SilentServer()
    yield server
    server.close()


def hung_settings(tmp_path: Path, database_url: str) -> Settings:
    return Settings(
        _env_file=None,  # type: ignore[call-arg]
        data_dir=tmp_path / "var",
        database_url=database_url,
        artifacts_url=str(tmp_path / "artifacts"),
        database_connect_timeout=CONNECT_TIMEOUT_S,
        database_statement_timeout=STATEMENT_TIMEOUT_S,
    )


def timed(call: Callable[[], httpx.Response]) -> tuple[httpx.Response, float]:
    started = time.monotonic()
    response = call()
    return response, time.monotonic() - started


def test_a_postgres_that_accepts_and_never_answers_is_a_prompt_503(
    tmp_path: Path, silent_server: SilentServer
) -> None:
    from api.main import create_app

    url = f"postgresql+psycopg://postgres@127.0.0.1:{silent_server.port}/trainctl"
    with TestClient(create_app(hung_settings(tmp_path, url))) as client:
        headers = {"Authorization": "Bearer tc_not_checked_the_database_is_hung"}
        response, took = timed(lambda: client.get("/v1/jobs", headers=headers))
        assert response.status_code == 503, response.text
        assert response.headers["Retry-After"]
        assert took < PROMPT_S
        unauthenticated, took = timed(lambda: client.get("/v1/jobs"))
        assert unauthenticated.status_code == 401 and took < PROMPT_S


def test_a_locked_sqlite_database_is_a_503_within_the_statement_timeout(tmp_path: Path) -> None:
    from api.auth.service import create_key
    from api.main import create_app

    database = tmp_path / "trainctl.db"
    url = f"sqlite:///{database}"
    upgrade_database(url)
    app = create_app(hung_settings(tmp_path, url))
    with TestClient(app) as client:
        with app.state.session_factory() as session:
            headers = {"Authorization": f"Bearer {create_key(session, owner='alice')[1]}"}
        locker = sqlite3.connect(database, isolation_level=None)
        locker.execute("BEGIN IMMEDIATE")  # another process holds the write lock and never lets go
        try:
            response, took = timed(
                lambda: client.post("/v1/jobs", json={"spec": EXAMPLE_SPEC}, headers=headers)
            )
        finally:
            locker.execute("ROLLBACK")
            locker.close()
        assert response.status_code == 503, response.text
        assert response.headers["Retry-After"]
        assert took < STATEMENT_TIMEOUT_S + PROMPT_S
