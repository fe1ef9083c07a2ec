"""What operators see of a task: its job in its name and headers, and events where Flower reads them."""

from __future__ import annotations

import json
from pathlib import Path

from sqlalchemy import create_engine, text

from core.broker import EMBEDDED_PREFIX, RUN_JOB_TASK, make_celery, publish_job, task_label
from core.config import Settings


def test_a_published_task_names_its_job(tmp_path: Path) -> None:
    settings = Settings(_env_file=None, data_dir=tmp_path)  # type: ignore[call-arg]
    app = make_celery(settings)
    publish_job(app, "job_0123456789abcdef", device="cpu", default_queue="cpu")
    app.close()
    engine = create_engine(settings.resolved_broker_url.removeprefix(EMBEDDED_PREFIX))
    with engine.connect() as connection:
        (payload,) = connection.execute(text("SELECT payload FROM kombu_message")).scalars()
    engine.dispose()
    headers = json.loads(payload)["headers"]
    assert headers["task"] == RUN_JOB_TASK  # what the worker runs
    assert headers["shadow"] == task_label("job_0123456789abcdef") == "trainctl.run_job[job_0123456789abcdef]"
    assert headers["job_id"] == "job_0123456789abcdef"


def test_task_events_are_sent_over_redis_only(tmp_path: Path) -> None:
    redis = make_celery(Settings(data_dir=tmp_path, broker_url="redis://127.0.0.1:6379/8"))
    embedded = make_celery(Settings(data_dir=tmp_path))
    assert redis.conf.worker_send_task_events and redis.conf.task_send_sent_event
    assert not embedded.conf.worker_send_task_events  # no fanout there: events would pile up unread
