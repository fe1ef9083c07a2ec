"""Fixtures shared by every test: real databases (SQLite always, PostgreSQL when configured), app, keys."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy.exc import OperationalError

from core.config import Settings
from core.db import scratch_database

TEST_DATABASE_ENV = "TRAINCTL_TEST_DATABASE_URL"
TEST_BROKER_ENV = "TRAINCTL_TEST_BROKER_URL"


@pytest.fixture(scope="session", autouse=True)
def session_dataset_cache(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """One dataset cache for the whole run (MNIST-1D is generated once), never the checkout's var/."""
    folder = tmp_path_factory.mktemp("datasets")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("TRAINCTL_DATASET_CACHE", str(folder))
        yield folder


def _postgres_server_url() -> str:
    url = os.environ.get(TEST_DATABASE_ENV)
    if not url:
        pytest.skip(
            f"PostgreSQL tests need {TEST_DATABASE_ENV} (e.g. postgresql+psycopg://postgres@127.0.0.1/test)"
        )
    return url


@pytest.fixture(params=["sqlite", "postgresql"])
def blank_database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A fresh, empty database: a SQLite file, or a uniquely named PostgreSQL database dropped afterwards."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'trainctl.db'}"
        return
    try:
        with scratch_database(_postgres_server_url(), "trainctl_test") as url:
            yield url
    except OperationalError as error:
        pytest.fail(f"{TEST_DATABASE_ENV} is set but PostgreSQL is unreachable: {error}")


@pytest.fixture
def database_url(blank_database_url: str) -> str:
    """A fresh database migrated to head."""
    from core.migrate import upgrade_database

    upgrade_database(blank_database_url)
    return blank_database_url


@pytest.fixture
def settings(database_url: str, tmp_path: Path) -> Settings:
    """Settings for one test: its own data dir, database and (for PostgreSQL runs) the test Redis."""
    broker_url = os.environ.get(TEST_BROKER_ENV) if database_url.startswith("postgresql") else None
    return Settings(
        _env_file=None,  # type: ignore[call-arg]
        data_dir=tmp_path / "var",
        database_url=database_url,
        broker_url=broker_url,
        artifacts_url=str(tmp_path / "artifacts"),
        cors_origins=[],
    )


@pytest.fixture
def app(settings: Settings) -> FastAPI:
    """The API app for these settings."""
    from api.main import create_app

    return create_app(settings)


@pytest.fixture
def client(app: FastAPI) -> Iterator[TestClient]:
    """An HTTP client on the app (lifespan run)."""
    with TestClient(app) as test_client:
        yield test_client


@pytest.fixture
def api_key(app: FastAPI) -> str:
    """The plaintext secret of a fresh key of owner 'alice'."""
    from api.auth.service import create_key

    with app.state.session_factory() as session:
        _key, secret = create_key(session, owner="alice")
    return secret


@pytest.fixture
def auth_headers(api_key: str) -> dict[str, str]:
    """Authorization header for 'alice'."""
    return {"Authorization": f"Bearer {api_key}"}
