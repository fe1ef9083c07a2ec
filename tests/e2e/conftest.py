"""A real worker process and the API, per backend: SQLite + embedded broker, PostgreSQL + Redis."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass

import pytest
import redis
from fastapi.testclient import TestClient

from core.config import Settings
from core.migrate import upgrade_database
from tests.conftest import TEST_BROKER_ENV, TEST_DATABASE_ENV
from tests.e2e.harness import WorkerProcess, postgres_database


@dataclass
class Service:
    """The API (in-process, over HTTP via TestClient) and one real worker process."""

    settings: Settings
    client: TestClient
    headers: dict[str, str]
    worker: WorkerProcess


NO_MIRROR = "http://127.0.0.1:9"  # the discard port: connections are refused


def backend_settings(kind: str, tmp: os.PathLike[str], stack: ExitStack) -> Settings:
    """Settings of one backend, with a queue of its own (Redis is shared by concurrent test runs)."""
    from pathlib import Path

    root = Path(tmp)
    common = {
        "data_dir": root / "var",
        "artifacts_url": str(root / "artifacts"),
        "default_queue": f"cpu-{uuid.uuid4().hex[:8]}",
        "heartbeat_timeout": 60.0,
        "dataset_mirror": NO_MIRROR,  # no test may reach the internet: benchmark downloads fail fast
    }
    if kind == "sqlite":
        return Settings(_env_file=None, database_url=f"sqlite:///{root / 'trainctl.db'}", **common)  # type: ignore[call-arg]
    server_url, broker_url = os.environ.get(TEST_DATABASE_ENV), os.environ.get(TEST_BROKER_ENV)
    if not server_url or not broker_url:
        pytest.skip(f"PostgreSQL + Redis end-to-end tests need {TEST_DATABASE_ENV} and {TEST_BROKER_ENV}")
    try:
        database_url = stack.enter_context(postgres_database(server_url))
        redis.Redis.from_url(broker_url, socket_connect_timeout=3).ping()
    except Exception as error:  # CI sets the variables: an unreachable server must fail, not skip
        pytest.fail(f"{TEST_DATABASE_ENV}/{TEST_BROKER_ENV} are set but unreachable: {error}")
    return Settings(_env_file=None, database_url=database_url, broker_url=broker_url, **common)  # type: ignore[call-arg]


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def service(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    """One worker per backend per test module (starting torch costs seconds; jobs are isolated by id)."""
    from api.auth.service import create_key
    from api.main import create_app

    with ExitStack() as stack:
        tmp = tmp_path_factory.mktemp(f"e2e-{request.param}")
        settings = backend_settings(request.param, tmp, stack)
        upgrade_database(settings.resolved_database_url)
        worker = WorkerProcess(settings, tmp / "worker.log")
        stack.callback(worker.stop)
        app = create_app(settings)
        client = stack.enter_context(TestClient(app))
        with app.state.session_factory() as session:
            _row, secret = create_key(session, owner="alice")
        worker.wait_ready(settings)
        yield Service(settings, client, {"Authorization": f"Bearer {secret}"}, worker)
