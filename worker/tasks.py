"""Celery tasks: transport only. They receive ids and hand them to the runner."""

from __future__ import annotations

from celery.exceptions import Reject

from core.broker import REAPER_TASK, RUN_GROUP_TASK, RUN_JOB_TASK
from core.config import get_settings
from core.reaper import run_reaper
from worker import groups
from worker.celery_app import celery_app, reaper_sessions, worker_context
from worker.context import shutdown_requested


@celery_app.task(name=RUN_JOB_TASK)
def run_job(job_id: str) -> str:
    """Run one job (a duplicate delivery of a job already taken does nothing)."""
    if shutdown_requested.is_set():
        # This worker is going away: the message goes back to the broker for another worker.
        raise Reject("worker shutting down", requeue=True)
    # A job of a replica group (re-queued by the sweep) brings its queued group mates along.
    return groups.run_group(worker_context(), [job_id])[0]


@celery_app.task(name=RUN_GROUP_TASK)
def run_group(job_ids: list[str]) -> list[str]:
    """Run a replica group's jobs together as one stacked model."""
    if shutdown_requested.is_set():
        raise Reject("worker shutting down", requeue=True)
    return groups.run_group(worker_context(), job_ids)


@celery_app.task(name=REAPER_TASK)
def reap() -> dict[str, object]:
    """Re-queue stale jobs and re-publish lost ones (scheduled by Celery beat)."""
    outcome = run_reaper(sessions=reaper_sessions(), celery_app=celery_app, settings=get_settings())
    return {"republished": [job_id for job_id, _ in outcome.republish], "failed": outcome.failed}
