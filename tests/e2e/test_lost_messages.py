"""Messages lost by Redis while jobs wait: the reaper re-publishes them and each job runs exactly once."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from sqlalchemy import func, select

from core.broker import make_celery, publish_job
from core.config import Settings
from core.db import make_engine, make_session_factory, session_scope
from core.migrate import upgrade_database
from core.models import EpochMetric, Job, JobStatus
from core.reaper import ReaperThread
from tests.conftest import TEST_BROKER_ENV, TEST_DATABASE_ENV
from tests.e2e.harness import IRIS_SPEC, WorkerProcess, postgres_database, wait_for

pytestmark = pytest.mark.slow


@pytest.fixture
def postgres_url() -> Iterator[str]:
    server_url = os.environ.get(TEST_DATABASE_ENV)
    if not server_url or not os.environ.get(TEST_BROKER_ENV):
        pytest.skip(f"needs {TEST_DATABASE_ENV} and {TEST_BROKER_ENV}")
    with postgres_database(server_url) as url:
        yield url


def test_jobs_whose_messages_redis_lost_still_run_exactly_once(postgres_url: str, tmp_path: Path) -> None:
    broker_url = os.environ[TEST_BROKER_ENV]
    settings = Settings(
        _env_file=None,  # type: ignore[call-arg]
        data_dir=tmp_path / "var",
        database_url=postgres_url,
        broker_url=broker_url,
        artifacts_url=str(tmp_path / "artifacts"),
        default_queue=f"cpu-{uuid.uuid4().hex[:8]}",
        republish_after=1.0,
        reaper_interval=0.5,
    )
    upgrade_database(postgres_url)
    engine = make_engine(postgres_url)
    sessions = make_session_factory(engine)
    celery_app = make_celery(settings)
    job_ids = [f"job_{uuid.uuid4().hex[:16]}" for _ in range(3)]
    with session_scope(sessions) as session:
        for job_id in job_ids:
            session.add(Job(id=job_id, owner="alice", spec=IRIS_SPEC, epochs=5))
    for job_id in job_ids:
        publish_job(celery_app, job_id, device="auto", default_queue=settings.default_queue)
    # Redis loses them (as a restart without persistence would): only this test's queue is dropped.
    client = redis.Redis.from_url(broker_url)
    assert client.llen(settings.default_queue) == 3
    client.delete(settings.default_queue)

    reaper = ReaperThread(sessions=sessions, celery_app=celery_app, settings=settings)
    worker = WorkerProcess(settings, tmp_path / "worker.log")
    reaper.start()
    try:
        worker.wait_ready(settings)

        def all_done() -> bool:
            with sessions() as session:
                statuses = session.scalars(select(Job.status).where(Job.id.in_(job_ids))).all()
            return all(status == JobStatus.succeeded for status in statuses)

        wait_for(all_done, 90, worker.output)
    finally:
        reaper.stop()
        worker.stop()
        celery_app.close()
    with sessions() as session:
        attempts = session.scalars(select(Job.attempts).where(Job.id.in_(job_ids))).all()
        rows = session.scalar(
            select(func.count()).select_from(EpochMetric).where(EpochMetric.job_id.in_(job_ids))
        )
    engine.dispose()
    assert attempts == [1, 1, 1], "each job ran once, duplicates of re-published messages did nothing"
    assert rows == 15
