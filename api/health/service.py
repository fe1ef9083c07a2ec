"""Checks behind GET /v1/health (no FastAPI here)."""

from __future__ import annotations

import logging
from datetime import timedelta
from typing import Any

from sqlalchemy import select, text
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from api.auth.service import authenticate
from api.errors import Unauthorized
from api.health.schemas import DependencyCheck, HealthReport, WorkerSeen
from core.db import utcnow
from core.models import Job, WorkerBeat

log = logging.getLogger(__name__)
BROKER_TIMEOUT_SECONDS = 2.0


def check_database(session: Session) -> DependencyCheck:
    """SELECT 1."""
    try:
        session.execute(text("SELECT 1"))
    except SQLAlchemyError as error:
        session.rollback()
        return DependencyCheck(ok=False, detail=f"database unreachable ({type(error).__name__})")
    return DependencyCheck(ok=True, detail="SELECT 1 answered")


def check_broker(celery_app: Any) -> DependencyCheck:
    """Open (and close) a broker connection, giving up after a short timeout."""
    try:
        with celery_app.connection_for_write() as connection:
            connection.ensure_connection(
                max_retries=1, interval_start=0, interval_step=0, timeout=BROKER_TIMEOUT_SECONDS
            )
    except Exception as error:  # kombu raises transport-specific types
        log.warning("broker check failed: %s", type(error).__name__)
        return DependencyCheck(ok=False, detail=f"broker unreachable ({type(error).__name__})")
    return DependencyCheck(ok=True, detail="connected")


def _owner_of(session: Session, secret: str | None) -> str | None:
    """The owner of a valid key; None for no key or a bad one (health answers either way)."""
    if not secret:
        return None
    try:
        return authenticate(session, secret=secret)
    except Unauthorized:
        return None


def recent_workers(session: Session, *, heartbeat_timeout: float, owner: str | None) -> list[WorkerSeen]:
    """Workers whose last heartbeat is within twice the heartbeat timeout; job ids of `owner`'s jobs only."""
    since = utcnow() - timedelta(seconds=2 * heartbeat_timeout)
    rows = list(
        session.scalars(select(WorkerBeat).where(WorkerBeat.last_seen >= since).order_by(WorkerBeat.name))
    )
    running = {row.current_job_id for row in rows if row.current_job_id}
    visible = (
        set(session.scalars(select(Job.id).where(Job.id.in_(running), Job.owner == owner)))
        if owner and running
        else set()
    )
    return [
        WorkerSeen(
            name=row.name,
            device=row.device,
            queues=[queue for queue in row.queues.split(",") if queue],
            current_job_id=row.current_job_id if row.current_job_id in visible else None,
            last_seen=row.last_seen,
        )
        for row in rows
    ]


def health_report(
    session: Session, *, celery_app: Any, heartbeat_timeout: float, secret: str | None = None
) -> HealthReport:
    """Database, broker and workers; a dead database makes the report 'unavailable'."""
    database = check_database(session)
    broker = check_broker(celery_app)
    workers = (
        recent_workers(session, heartbeat_timeout=heartbeat_timeout, owner=_owner_of(session, secret))
        if database.ok
        else []
    )
    if not database.ok:
        status = "unavailable"
    elif not broker.ok or not workers:
        status = "degraded"
    else:
        status = "ok"
    return HealthReport(status=status, database=database, broker=broker, workers=workers)
