"""PostgreSQL unreachable for seconds while a job runs: the worker waits its writes out, the API answers 503.

The worker and the API reach PostgreSQL through a TCP proxy in this test process; cutting it drops every
open connection and refuses new ones, as a database restart or a network partition would, without
touching the server other tests use.
"""

from __future__ import annotations

import asyncio
import os
import threading
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import Future
from pathlib import Path
from typing import Any

import pytest
import redis
from fastapi.testclient import TestClient
from sqlalchemy import func, select
from sqlalchemy.engine import make_url

from core.config import Settings
from core.db import make_engine, make_session_factory
from core.migrate import upgrade_database
from core.models import EpochMetric
from tests.conftest import TEST_BROKER_ENV, TEST_DATABASE_ENV
from tests.e2e.harness import WorkerProcess, job_status, postgres_database, submit, wait_for, wait_for_status

pytestmark = pytest.mark.slow

EPOCHS = 12
OUTAGE_S = 3.0
OUTAGE_SPEC: dict[str, Any] = {
    "dataset": {"name": "moons", "samples": 4000},
    "network": {"type": "mlp", "hidden_layers": [32, 32]},
    "training": {"epochs": EPOCHS, "batch_size": 16, "seed": 0},
}


class CuttableProxy:
    """A TCP proxy on 127.0.0.1 in front of one server; cut() drops its connections and refuses new ones."""

    def __init__(self, host: str, port: int) -> None:
        self.target = (host, port)
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="db-proxy", daemon=True)
        self.cut_off = False
        self.transports: set[asyncio.BaseTransport] = set()
        self.refused = 0
        self.thread.start()
        self.server = self._call(asyncio.start_server(self._accept, "127.0.0.1", 0)).result(10)
        self.port = int(self.server.sockets[0].getsockname()[1])

    def _call(self, coroutine: Any) -> Future[Any]:
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop)

    async def _accept(self, client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter) -> None:
        if self.cut_off:
            self.refused += 1
            client_writer.transport.abort()  # a reset, like a port with nothing behind it
            return
        try:
            server_reader, server_writer = await asyncio.open_connection(*self.target)
        except OSError:
            client_writer.transport.abort()
            return
        self.transports |= {client_writer.transport, server_writer.transport}
        await asyncio.gather(
            self._pipe(client_reader, server_writer), self._pipe(server_reader, client_writer)
        )

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        except (ConnectionError, OSError):
            pass
        finally:
            self.transports.discard(writer.transport)
            writer.transport.abort()

    async def _cut(self) -> None:
        self.cut_off = True
        for transport in list(self.transports):
            transport.abort()
        self.transports.clear()

    async def _restore(self) -> None:
        self.cut_off = False

    def cut(self) -> None:
        self._call(self._cut()).result(10)

    def restore(self) -> None:
        self._call(self._restore()).result(10)

    def close(self) -> None:
        self.server.close()
        self._call(self._cut()).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)


@pytest.fixture
def proxied_postgres() -> Iterator[tuple[str, str, CuttableProxy]]:
    """A fresh PostgreSQL database: (direct URL, URL through the proxy, proxy)."""
    server_url, broker_url = os.environ.get(TEST_DATABASE_ENV), os.environ.get(TEST_BROKER_ENV)
    if not server_url or not broker_url:
        pytest.skip(f"the database outage test needs {TEST_DATABASE_ENV} and {TEST_BROKER_ENV}")
    redis.Redis.from_url(broker_url, socket_connect_timeout=3).ping()
    with postgres_database(server_url) as direct:
        url = make_url(direct)
        proxy = CuttableProxy(url.host or "127.0.0.1", url.port or 5432)
        try:
            proxied = url.set(host="127.0.0.1", port=proxy.port, query={"connect_timeout": "3"})
            yield direct, proxied.render_as_string(hide_password=False), proxy
        finally:
            proxy.close()


def test_worker_waits_out_a_database_outage_and_the_api_answers_503(
    proxied_postgres: tuple[str, str, CuttableProxy], tmp_path: Path
) -> None:
    from api.auth.service import create_key
    from api.main import create_app

    direct_url, proxied_url, proxy = proxied_postgres
    settings = Settings(
        _env_file=None,  # type: ignore[call-arg]
        data_dir=tmp_path / "var",
        database_url=proxied_url,
        broker_url=os.environ[TEST_BROKER_ENV],
        artifacts_url=str(tmp_path / "artifacts"),
        default_queue=f"cpu-outage-{uuid.uuid4().hex[:8]}",
    )
    upgrade_database(direct_url)
    worker = WorkerProcess(settings, tmp_path / "worker.log")
    try:
        app = create_app(settings)
        with TestClient(app) as client:
            with app.state.session_factory() as session:
                headers = {"Authorization": f"Bearer {create_key(session, owner='alice')[1]}"}
            worker.wait_ready(settings)
            job_id = submit(client, headers, OUTAGE_SPEC)
            wait_for(lambda: job_status(client, headers, job_id)["progress"]["epoch"] >= 2, 60, worker.output)
            epoch_at_cut = job_status(client, headers, job_id)["progress"]["epoch"]

            proxy.cut()
            answers: list[tuple[int, str | None]] = []
            ends = time.monotonic() + OUTAGE_S
            while time.monotonic() < ends:
                for url in (f"/v1/jobs/{job_id}", f"/v1/jobs/{job_id}/metrics", "/v1/health"):
                    response = client.get(url, headers=headers)
                    answers.append((response.status_code, response.headers.get("retry-after")))
                time.sleep(0.2)
            proxy.restore()

            assert answers and all(status == 503 for status, _ in answers), answers
            assert all(retry_after and int(retry_after) > 0 for _, retry_after in answers), answers
            assert proxy.refused > 0, "connections were attempted, and refused, during the outage"

            job = wait_for_status(client, headers, job_id, {"succeeded", "failed", "cancelled"}, timeout=120)
            assert job["status"] == "succeeded", (job, worker.output())
            assert job["attempts"] == 1, "the job was never lost or re-queued"
            assert epoch_at_cut < EPOCHS, "the outage fell while the job was running"
        log = worker.output()
        assert "database unavailable" in log and "retrying" in log, "a write waited the outage out"
    finally:
        worker.stop()

    engine = make_engine(direct_url)
    try:
        with make_session_factory(engine)() as session:
            rows = session.execute(
                select(EpochMetric.epoch, func.count())
                .where(EpochMetric.job_id == job_id)
                .group_by(EpochMetric.epoch)
            ).all()
    finally:
        engine.dispose()
    assert sorted(rows) == [(epoch, 1) for epoch in range(1, EPOCHS + 1)], "every epoch exactly once"
