"""Workers from their heartbeat rows (works on every broker, unlike Celery's broadcast inspection)."""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session

from api.schema_types import as_utc
from api.workers.schemas import WorkerInfo, WorkerList
from core.db import utcnow
from core.models import WorkerBeat


def _worker(rows: list[WorkerBeat], *, alive_since: datetime) -> WorkerInfo:
    newest = max(rows, key=lambda row: as_utc(row.last_seen))
    last_seen = as_utc(newest.last_seen)
    return WorkerInfo(
        name=newest.node or newest.name,
        host=newest.host,
        pid=newest.pid,
        queues=[queue for queue in newest.queues.split(",") if queue],
        device=newest.device,
        concurrency=newest.concurrency,
        processes=len(rows),
        current_jobs=sorted(row.current_job_id for row in rows if row.current_job_id),
        started_at=min(as_utc(row.started_at) for row in rows),
        last_seen=last_seen,
        alive=last_seen >= alive_since,
    )


def list_workers(session: Session, *, seen_within: float, heartbeat_timeout: float) -> WorkerList:
    """Celery workers whose processes beat within `seen_within` seconds, grouped by worker."""
    now = utcnow()
    rows = session.scalars(
        select(WorkerBeat).where(WorkerBeat.last_seen >= now - timedelta(seconds=seen_within))
    )
    by_worker: dict[str, list[WorkerBeat]] = {}
    for row in rows:
        by_worker.setdefault(row.node or row.name, []).append(row)
    alive_since = now - timedelta(seconds=2 * heartbeat_timeout)
    workers = [_worker(group, alive_since=alive_since) for group in by_worker.values()]
    return WorkerList(items=sorted(workers, key=lambda w: (w.last_seen, w.name), reverse=True))
