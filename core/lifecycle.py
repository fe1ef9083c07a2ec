"""A job's life on the worker side: claim, progress, checkpoints, finish, and the reaper's re-queue.

Every function that writes is one transaction and commits it (as the API's services do): callers,
the runner, the reaper and the routes, never commit.
Writes that only the job's owner may make are conditional on (status running, worker), so a worker
whose job was re-queued behind its back learns it (False) instead of overwriting the new attempt.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from core.db import utcnow
from core.models import Checkpoint, EpochMetric, Job, JobStatus, WorkerBeat
from core.models.job import requested_device


def _owned(job_id: str, worker: str) -> Any:
    """The WHERE clause of a write only the running job's worker may make."""
    return (Job.id == job_id) & (Job.status == JobStatus.running) & (Job.worker == worker)


def _upsert(session: Session, model: type, values: dict[str, Any], keys: list[str]) -> None:
    """INSERT ... ON CONFLICT (keys) DO UPDATE, on SQLite and PostgreSQL alike."""
    dialect = session.get_bind().dialect.name
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    statement = insert(model).values(**values)
    changed = {name: statement.excluded[name] for name in values if name not in keys}
    session.execute(statement.on_conflict_do_update(index_elements=keys, set_=changed))


def _commit_changed(session: Session, result: Any) -> bool:
    """Commit, and say whether the conditional statement changed a row."""
    session.commit()
    return bool(result.rowcount)


def claim_job(session: Session, *, job_id: str, worker: str, device: str) -> bool:
    """Move a queued job to running for `worker`; False when it is not queued (a duplicate delivery)."""
    now = utcnow()
    claimed = session.execute(
        update(Job)
        .where(Job.id == job_id, Job.status == JobStatus.queued)
        .values(
            status=JobStatus.running,
            worker=worker,
            device=device,
            started_at=now,
            heartbeat_at=now,
            attempts=Job.attempts + 1,
        )
        .execution_options(synchronize_session=False)
    )
    return _commit_changed(session, claimed)


def heartbeat(session: Session, *, job_id: str, worker: str) -> bool:
    """Say the job is alive; False when it is no longer this worker's (re-queued, cancelled, deleted)."""
    beat = session.execute(
        update(Job)
        .where(_owned(job_id, worker))
        .values(heartbeat_at=utcnow())
        .execution_options(synchronize_session=False)
    )
    return _commit_changed(session, beat)


def record_epoch(session: Session, *, job_id: str, worker: str, record: dict[str, Any]) -> bool:
    """Store one epoch's record and the job's progress; idempotent per (job, epoch). False: not ours."""
    epoch = int(record["epoch"])
    seconds = record.get("seconds")
    job = session.execute(
        select(Job.epoch_seconds, Job.epoch).where(_owned(job_id, worker)).with_for_update()
    ).first()
    if job is None:
        session.rollback()
        return False
    _upsert(
        session,
        EpochMetric,
        {"job_id": job_id, "epoch": epoch, "record": record, "created_at": utcnow()},
        ["job_id", "epoch"],
    )
    values: dict[str, Any] = {"epoch": epoch, "heartbeat_at": utcnow()}
    if isinstance(seconds, int | float):
        # A running mean over epochs, for the ETA; a re-recorded epoch just nudges it.
        previous, done = job.epoch_seconds, max(job.epoch, 0)
        values["epoch_seconds"] = seconds if previous is None else (previous * done + seconds) / (done + 1)
    session.execute(update(Job).where(Job.id == job_id).values(**values))
    session.commit()
    return True


def is_cancel_requested(session: Session, *, job_id: str) -> bool:
    """Whether someone asked to cancel the job (a missing job counts as cancelled: it was deleted)."""
    requested = session.execute(select(Job.cancel_requested).where(Job.id == job_id)).scalar_one_or_none()
    return requested is None or bool(requested)


def record_checkpoint(
    session: Session, *, job_id: str, name: str, uri: str, epoch: int, size_bytes: int
) -> None:
    """Remember where a checkpoint lives; `last` and `best` are overwritten as training goes."""
    _upsert(
        session,
        Checkpoint,
        {
            "job_id": job_id,
            "name": name,
            "uri": uri,
            "epoch": epoch,
            "size_bytes": size_bytes,
            "updated_at": utcnow(),
        },
        ["job_id", "name"],
    )
    session.commit()


def finish_job(
    session: Session,
    *,
    job_id: str,
    worker: str,
    status: JobStatus,
    result: dict[str, Any] | None = None,
    error: str | None = None,
) -> bool:
    """End a running job as succeeded, failed or cancelled; False when it was not this worker's."""
    now = utcnow()
    finished = session.execute(
        update(Job)
        .where(_owned(job_id, worker))
        .values(status=status, result=result, error=error, finished_at=now, heartbeat_at=now)
        .execution_options(synchronize_session=False)
    )
    return _commit_changed(session, finished)


def hand_back(session: Session, *, job_id: str, worker: str) -> bool:
    """Return a running job to the queue (the worker is shutting down); it resumes from `last`.

    The claim is taken back too: a graceful hand-back is not a lost attempt, so restarts of workers
    never bring a job closer to failing as lost (max_attempts counts claims that ended in a loss).
    """
    handed = session.execute(
        update(Job)
        .where(_owned(job_id, worker))
        .values(status=JobStatus.queued, worker=None, queued_at=utcnow(), attempts=Job.attempts - 1)
        .execution_options(synchronize_session=False)
    )
    return _commit_changed(session, handed)


@dataclass
class ReaperOutcome:
    """What a reaper pass changed: jobs to publish again, and jobs given up on."""

    republish: list[tuple[str, str]] = field(default_factory=list)  # (job id, device asked for)
    failed: list[str] = field(default_factory=list)


def requeue_stale(
    session: Session, *, timeout: float, max_attempts: int, now: datetime | None = None
) -> ReaperOutcome:
    """Re-queue running jobs silent for `timeout` s; fail those already lost `max_attempts` times."""
    now = now or utcnow()
    cutoff = now - timedelta(seconds=timeout)
    stale = session.execute(
        select(Job.id, Job.attempts, Job.spec).where(
            Job.status == JobStatus.running, Job.heartbeat_at < cutoff
        )
    ).all()
    outcome = ReaperOutcome()
    for job_id, attempts, spec in stale:
        # Conditional again, so a job whose worker beat in the meantime is left alone.
        still_stale = (Job.id == job_id) & (Job.status == JobStatus.running) & (Job.heartbeat_at < cutoff)
        if attempts >= max_attempts:
            changed = session.execute(
                update(Job)
                .where(still_stale)
                .values(
                    status=JobStatus.failed,
                    finished_at=now,
                    error=f"lost {attempts} times: its worker stopped sending heartbeats "
                    f"for {timeout:g} s each time (killed, out of memory, or the host went away)",
                )
                .execution_options(synchronize_session=False)
            )
            if changed.rowcount:  # type: ignore[attr-defined]
                outcome.failed.append(job_id)
            continue
        changed = session.execute(
            update(Job)
            .where(still_stale)
            .values(status=JobStatus.queued, worker=None, queued_at=now)
            .execution_options(synchronize_session=False)
        )
        if changed.rowcount:  # type: ignore[attr-defined]
            outcome.republish.append((job_id, requested_device(spec)))
    session.commit()
    return outcome


def republish_lost(session: Session, *, older_than: float, now: datetime | None = None) -> ReaperOutcome:
    """Queued jobs published more than `older_than` s ago: stamp them and return them for re-publishing.

    The broker message may be gone (Redis flushed); a duplicate is harmless because claiming is
    conditional, and the new stamp keeps the same job from being re-published at every pass.
    """
    now = now or utcnow()
    cutoff = now - timedelta(seconds=older_than)
    waiting = session.execute(
        select(Job.id, Job.spec).where(Job.status == JobStatus.queued, Job.queued_at < cutoff)
    ).all()
    outcome = ReaperOutcome()
    for job_id, spec in waiting:
        stamped = session.execute(
            update(Job)
            .where(Job.id == job_id, Job.status == JobStatus.queued, Job.queued_at < cutoff)
            .values(queued_at=now)
            .execution_options(synchronize_session=False)
        )
        if stamped.rowcount:  # type: ignore[attr-defined]
            outcome.republish.append((job_id, requested_device(spec)))
    session.commit()
    return outcome


def record_worker_beat(
    session: Session,
    *,
    name: str,
    device: str,
    queues: str,
    current_job_id: str | None,
    node: str | None = None,
    host: str | None = None,
    pid: int | None = None,
    concurrency: int | None = None,
) -> None:
    """Announce a training process (for health and GET /v1/workers: who was seen recently, running what)."""
    now = utcnow()
    values = {
        "name": name,
        "device": device,
        "queues": queues,
        "current_job_id": current_job_id,
        "node": node,
        "host": host,
        "pid": pid,
        "concurrency": concurrency,
        "last_seen": now,
    }
    existing = session.get(WorkerBeat, name)
    if existing is None:
        session.add(WorkerBeat(started_at=now, **values))
    else:
        for key, value in values.items():
            setattr(existing, key, value)
    session.commit()
