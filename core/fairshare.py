"""Which queued job a free worker slot takes: owners served fairly, each under a cap on running jobs.

A message names a job, but a message is really a free slot's turn: the slot takes the oldest queued
job of the owner with the fewest running jobs, ties going round-robin to the owner served least
recently (whose last job started earliest, or never), skipping owners at
TRAINCTL_MAX_RUNNING_JOBS_PER_OWNER. So one owner's backlog cannot hold every slot while another owner
waits. The job the message named stays queued; the message of the job taken is still in the broker
and gives another slot its turn, so messages and queued jobs stay one to one.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from core.broker import queue_for_device
from core.models import Job, JobStatus
from core.models.job import requested_device

CANDIDATES_PER_OWNER = 8  # each owner's oldest queued jobs considered (some may be for other queues)


def _queue_of(spec: dict[str, Any], default_queue: str) -> str:
    return queue_for_device(requested_device(spec), default_queue)


def _served_at(started: datetime | None) -> float:
    """An owner never served sorts first; then the one served longest ago."""
    return started.timestamp() if started is not None else float("-inf")


def running_per_owner(session: Session) -> dict[str, int]:
    """Running jobs by owner."""
    rows = session.execute(
        select(Job.owner, func.count()).where(Job.status == JobStatus.running).group_by(Job.owner)
    )
    return {owner: int(count) for owner, count in rows}


def pick_fair_job(
    session: Session, *, queues: set[str], default_queue: str, max_running_per_owner: int
) -> str | None:
    """The queued job this slot should claim, for one of `queues`; None when no owner may start one."""
    running = running_per_owner(session)
    served = session.execute(select(Job.owner, func.max(Job.started_at)).group_by(Job.owner))
    last_start = {owner: started for owner, started in served}
    rank = func.row_number().over(partition_by=Job.owner, order_by=(Job.created_at, Job.id)).label("rank")
    oldest = (
        select(Job.id, Job.owner, Job.spec, Job.created_at, rank)
        .where(Job.status == JobStatus.queued)
        .subquery()
    )
    candidates = session.execute(
        select(oldest.c.id, oldest.c.owner, oldest.c.spec, oldest.c.created_at).where(
            oldest.c.rank <= CANDIDATES_PER_OWNER
        )
    ).all()
    eligible = [
        (running.get(owner, 0), _served_at(last_start.get(owner)), created_at, job_id)
        for job_id, owner, spec, created_at in candidates
        if running.get(owner, 0) < max_running_per_owner and _queue_of(spec or {}, default_queue) in queues
    ]
    return str(min(eligible)[-1]) if eligible else None


def oldest_queued_of_owner(session: Session, *, owner: str) -> tuple[str, dict[str, Any]] | None:
    """The owner's oldest queued job and its spec (to wake a slot for it when one of theirs ends)."""
    row = session.execute(
        select(Job.id, Job.spec)
        .where(Job.owner == owner, Job.status == JobStatus.queued)
        .order_by(Job.created_at, Job.id)
        .limit(1)
    ).first()
    return (row[0], row[1]) if row else None
