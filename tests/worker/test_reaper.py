"""The reaper publishes what it re-queued, through the real broker of each backend (embedded or Redis)."""

from __future__ import annotations

import os
import uuid
from datetime import timedelta
from pathlib import Path

from core.broker import RUN_JOB_TASK, make_celery
from core.config import Settings
from core.db import make_engine, make_session_factory, session_scope, utcnow
from core.models import Job, JobStatus
from core.reaper import ReaperThread
from tests.conftest import TEST_BROKER_ENV
from tests.e2e.harness import wait_for


def test_reaper_thread_requeues_stale_jobs_and_republishes(database_url: str, tmp_path: Path) -> None:
    broker_url = os.environ.get(TEST_BROKER_ENV) if database_url.startswith("postgresql") else None
    settings = Settings(
        _env_file=None,  # type: ignore[call-arg]
        data_dir=tmp_path,
        database_url=database_url,
        broker_url=broker_url,
        default_queue=f"reaper-{uuid.uuid4().hex[:8]}",
        heartbeat_timeout=5,
        republish_after=60,
        reaper_interval=0.1,
    )
    engine = make_engine(database_url)
    sessions = make_session_factory(engine)
    long_ago = utcnow() - timedelta(minutes=10)
    stale_id, waiting_id = uuid.uuid4().hex, uuid.uuid4().hex
    spec = {"dataset": {"name": "iris"}, "network": {"hidden_layers": [4]}}
    with session_scope(sessions) as session:
        session.add(
            Job(
                id=stale_id,
                owner="a",
                spec=spec,
                epochs=5,
                status=JobStatus.running,
                worker="gone",
                attempts=1,
                heartbeat_at=long_ago,
            )
        )
        session.add(Job(id=waiting_id, owner="a", spec=spec, epochs=5, queued_at=long_ago))
    celery_app = make_celery(settings)
    reaper = ReaperThread(sessions=sessions, celery_app=celery_app, settings=settings)
    reaper.start()
    received: set[str] = set()
    try:
        with celery_app.connection_for_read() as connection:
            queue = connection.SimpleQueue(settings.default_queue)

            def both_published() -> bool:
                try:
                    message = queue.get(timeout=0.5)
                except queue.Empty:
                    return False
                assert message.headers["task"] == RUN_JOB_TASK
                received.add(message.payload[0][0])
                message.ack()
                return received == {stale_id, waiting_id}

            wait_for(both_published, 20, lambda: f"published only {received}")
            queue.close()
    finally:
        reaper.stop()
        reaper.join(5)
        celery_app.close()
    with sessions() as session:
        stale = session.get(Job, stale_id)
        assert stale is not None and stale.status == JobStatus.queued and stale.worker is None
    engine.dispose()


def test_delivered_messages_are_purged_from_the_embedded_broker(tmp_path: Path) -> None:
    from sqlalchemy import create_engine, text

    from core.broker import publish_job, purge_delivered_messages

    settings = Settings(_env_file=None, data_dir=tmp_path)  # type: ignore[call-arg]
    celery_app = make_celery(settings)
    for job_id in ("a", "b"):
        publish_job(celery_app, job_id, device="cpu", default_queue="cpu")
    with celery_app.connection_for_read() as connection:
        queue = connection.SimpleQueue("cpu")
        queue.get(timeout=2).ack()  # delivered: kombu keeps it, invisible
        queue.close()
    celery_app.close()
    assert purge_delivered_messages(settings, older_than=3600) == 0, "recent deliveries are kept a while"
    assert purge_delivered_messages(settings, older_than=-60) == 1
    engine = create_engine(settings.resolved_broker_url.removeprefix("sqla+"))
    with engine.connect() as connection:
        assert connection.execute(text("SELECT count(*) FROM kombu_message")).scalar_one() == 1
    engine.dispose()
