"""Celery broker configuration, and publishing a job by task name (the API never imports worker/)."""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from celery import Celery
from kombu.transport import sqlalchemy as kombu_sqlalchemy
from sqlalchemy import create_engine, event, inspect, text
from sqlalchemy.engine import Engine

from core.config import Settings

RUN_JOB_TASK = "trainctl.run_job"
RUN_GROUP_TASK = "trainctl.run_group"
REAPER_TASK = "trainctl.reaper"
EMBEDDED_PREFIX = "sqla+"
# Redis re-delivers an unacknowledged message after this long; with acks_late a job's message stays
# unacknowledged while it trains, so it must outlast the longest job. A duplicate is harmless anyway
# (the claim is conditional) and a lost worker is handled by the reaper, not by this timeout.
REDIS_VISIBILITY_TIMEOUT_S = 7 * 24 * 3600

# Options of kombu's SQLAlchemy transport that are not create_engine() arguments.
_NOT_ENGINE_OPTIONS = frozenset(
    {
        "queue_tablename",
        "message_tablename",
        "callback",
        "errback",
        "max_retries",
        "interval_start",
        "interval_step",
        "interval_max",
        "retry_errors",
        "polling_interval",
    }
)


class EmbeddedBrokerChannel(kombu_sqlalchemy.Channel):
    """kombu's SQLAlchemy channel, tuned for a SQLite file shared by the API and worker processes."""

    def _engine_from_config(self) -> Engine:
        # kombu passes every transport option to create_engine, polling_interval included (a TypeError).
        conninfo = self.connection.client
        options = {k: v for k, v in conninfo.transport_options.items() if k not in _NOT_ENGINE_OPTIONS}
        engine = create_engine(conninfo.hostname, **options)
        if engine.dialect.name == "sqlite":
            event.listen(engine, "connect", _sqlite_broker_pragmas)
        return engine


class EmbeddedBrokerTransport(kombu_sqlalchemy.Transport):
    """The embedded default broker: no server, messages in a SQLite file."""

    Channel = EmbeddedBrokerChannel


def _sqlite_broker_pragmas(dbapi_connection: Any, _record: Any) -> None:
    # WAL lets the API publish while the worker polls, instead of failing with "database is locked".
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()


def is_embedded_broker(url: str) -> bool:
    """Whether `url` names the embedded SQLAlchemy transport (sqla+<database url>)."""
    return url.startswith(EMBEDDED_PREFIX)


def make_celery(settings: Settings, *, name: str = "trainctl") -> Celery:
    """The Celery app for `settings`: the one place where broker options are decided."""
    url = settings.resolved_broker_url
    app = Celery(name)
    conf: dict[str, Any] = {
        "task_acks_late": True,  # a job that dies with its worker is not lost from the broker
        "task_reject_on_worker_lost": True,
        "worker_prefetch_multiplier": 1,  # never hold a second job while training the first
        "task_ignore_result": True,  # results live in the database
        "task_serializer": "json",
        "accept_content": ["json"],
        "broker_connection_retry_on_startup": True,
        "task_default_queue": settings.default_queue,
        "worker_hijack_root_logger": False,
        "worker_send_task_events": False,
        "timezone": "UTC",
    }
    if is_embedded_broker(url):
        engine_url = url.removeprefix(EMBEDDED_PREFIX)
        if engine_url.startswith("sqlite:///"):
            database_file = engine_url.removeprefix("sqlite:///")
            if database_file and database_file != ":memory:":
                Path(database_file).parent.mkdir(parents=True, exist_ok=True)
        conf |= {
            "broker_url": engine_url,
            "broker_transport": f"{__name__}:EmbeddedBrokerTransport",
            "broker_transport_options": {
                "polling_interval": settings.broker_poll_interval,
                "connect_args": {"timeout": 30} if engine_url.startswith("sqlite") else {},
            },
        }
    else:
        conf |= {
            "broker_url": url,
            "broker_transport_options": {"visibility_timeout": REDIS_VISIBILITY_TIMEOUT_S},
            # Redis carries Celery's broadcast events: Flower and `celery events` show tasks live (the
            # embedded transport has no fanout, so there they would only pile up unread).
            "worker_send_task_events": True,
            "task_send_sent_event": True,
        }
    app.conf.update(conf)
    return app


def queue_for_device(device: str, default_queue: str) -> str:
    """The queue a job goes to: `cpu` or `gpu` by the device its spec asks for; `auto` takes the default."""
    if device == "cpu":
        return "cpu"
    if device.startswith("cuda"):
        return "gpu"
    return default_queue


def purge_delivered_messages(settings: Settings, *, older_than: float = 3600.0) -> int:
    """Delete delivered messages from the embedded broker: kombu keeps them, marked invisible, forever."""
    url = settings.resolved_broker_url
    if not is_embedded_broker(url):
        return 0
    engine = create_engine(url.removeprefix(EMBEDDED_PREFIX))
    # kombu stamps `timestamp` with local naive time when it delivers a message.
    cutoff = datetime.now() - timedelta(seconds=older_than)
    try:
        if not inspect(engine).has_table("kombu_message"):
            return 0
        with engine.begin() as connection:
            deleted = connection.execute(
                text("DELETE FROM kombu_message WHERE visible = :no AND timestamp < :cutoff"),
                {"no": False, "cutoff": cutoff},
            )
        return int(deleted.rowcount)
    finally:
        engine.dispose()


def task_label(job_id: str) -> str:
    """The name a task shows in Flower, `celery events` and worker logs: the task and its job at a glance."""
    return f"{RUN_JOB_TASK}[{job_id}]"


def publish_job(celery_app: Celery, job_id: str, *, device: str, default_queue: str) -> None:
    """Put a job id on the queue its device needs; the worker resolves everything else from the database."""
    celery_app.send_task(
        RUN_JOB_TASK,
        args=[job_id],
        queue=queue_for_device(device, default_queue),
        shadow=task_label(job_id),  # the displayed name; the worker still runs RUN_JOB_TASK
        headers={"job_id": job_id},
    )


def group_label(job_ids: list[str]) -> str:
    """The name a replica group's task shows in Flower and worker logs."""
    return f"{RUN_GROUP_TASK}[{', '.join(job_ids)}]"


def publish_group(celery_app: Celery, job_ids: list[str], *, device: str, default_queue: str) -> None:
    """Put a replica group's job ids on the queue its device needs: one worker trains them together."""
    celery_app.send_task(
        RUN_GROUP_TASK,
        args=[job_ids],
        queue=queue_for_device(device, default_queue),
        shadow=group_label(job_ids),
        headers={"job_ids": job_ids},
    )
