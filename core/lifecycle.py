"""A job's life on the worker side: claim, progress, checkpoints, finish, and the reaper's re-queue.

Every function that writes is one transaction and commits it (as the API's services do): callers,
the runner, the reaper and the routes, never commit.
Fencing: each claim gets a fresh attempt token, and every write only the job's owner may make is
conditional on (status running, that token). A worker whose job was re-queued and claimed again learns
it (False) and writes nothing more: no epoch row, checkpoint, result or status of a replaced attempt lands.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import bindparam, func, select, tuple_, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session, aliased

from core.curves import store_curves
from core.db import utcnow
from core.models import Checkpoint, EpochMetric, Job, JobStatus, WorkerBeat
from core.models.job import requested_device


def _owned(job_id: str, attempt: str) -> Any:
    """The WHERE clause of a write only the attempt that owns the running job may make."""
    return (Job.id == job_id) & (Job.status == JobStatus.running) & (Job.attempt == attempt)


def _hold(session: Session, job_id: str, attempt: str) -> bool:
    """Lock the job's row while `attempt` owns it (False, rolled back, when it does not)."""
    if _lock_owned(session, {(job_id, attempt)}):
        return True
    session.rollback()
    return False


Progress = tuple[float | None, int]  # a job's mean epoch seconds and its last recorded epoch


def _lock_owned(session: Session, owners: set[tuple[str, str]]) -> dict[str, Progress]:
    """Lock the rows of the (job, attempt) pairs whose attempt owns the running job; their progress.

    A conditional UPDATE comes first: SQLite has no row locks and starts no transaction on a SELECT, so
    only a write takes its lock before the check; on PostgreSQL it locks the rows as FOR UPDATE would.
    The owner's write is a sign of life, so it is the heartbeat it touches.
    """
    if not owners:
        return {}
    touched = session.execute(
        update(Job)
        .where(tuple_(Job.id, Job.attempt).in_(sorted(owners)), Job.status == JobStatus.running)
        .values(heartbeat_at=utcnow())
        .returning(Job.id, Job.epoch_seconds, Job.epoch)
        .execution_options(synchronize_session=False)
    )
    return {job_id: (seconds, epoch) for job_id, seconds, epoch in touched}


def _upsert(session: Session, model: type, rows: list[dict[str, Any]], keys: list[str]) -> None:
    """INSERT ... ON CONFLICT (keys) DO UPDATE of every row in one statement, on SQLite and PostgreSQL."""
    if not rows:
        return
    dialect = session.get_bind().dialect.name
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    statement = insert(model)
    changed = {name: statement.excluded[name] for name in rows[0] if name not in keys}
    session.connection().execute(statement.on_conflict_do_update(index_elements=keys, set_=changed), rows)


def _commit_changed(session: Session, result: Any) -> bool:
    """Commit, and say whether the conditional statement changed a row."""
    session.commit()
    return bool(result.rowcount)


def claim_job(
    session: Session, *, job_id: str, worker: str, device: str, max_running_per_owner: int | None = None
) -> str | None:
    """Move a queued job to running for `worker`; the new attempt's token, None when it is not queued
    (or when its owner already runs `max_running_per_owner` jobs)."""
    now, attempt = utcnow(), secrets.token_hex(16)
    claimable = (Job.id == job_id) & (Job.status == JobStatus.queued)
    if max_running_per_owner is not None:
        if session.get_bind().dialect.name == "postgresql":
            # Two workers claiming two jobs of one owner each count the other's claim only once it is
            # committed: claims of one owner take turns (SQLite runs one write at a time anyway).
            session.execute(
                select(func.pg_advisory_xact_lock(func.hashtext("trainctl-claim:" + Job.owner))).where(
                    Job.id == job_id
                )
            )
        other = aliased(Job)
        running = (
            select(func.count())
            .where(other.owner == Job.owner, other.status == JobStatus.running)
            .scalar_subquery()
        )
        claimable &= running < max_running_per_owner
    claimed = session.execute(
        update(Job)
        .where(claimable)
        .values(
            status=JobStatus.running,
            worker=worker,
            device=device,
            started_at=now,
            heartbeat_at=now,
            attempt=attempt,
            attempts=Job.attempts + 1,
        )
        .execution_options(synchronize_session=False)
    )
    return attempt if _commit_changed(session, claimed) else None


def holds(session: Session, *, job_id: str, attempt: str) -> bool:
    """Whether `attempt` still owns the running job."""
    return session.execute(select(Job.id).where(_owned(job_id, attempt))).first() is not None


def heartbeat(session: Session, *, job_id: str, attempt: str) -> bool:
    """Say the job is alive; False when the attempt no longer owns it (re-queued, finished, deleted)."""
    beat = session.execute(
        update(Job)
        .where(_owned(job_id, attempt))
        .values(heartbeat_at=utcnow())
        .execution_options(synchronize_session=False)
    )
    return _commit_changed(session, beat)


def record_epoch(session: Session, *, job_id: str, attempt: str, record: dict[str, Any]) -> bool:
    """Store one epoch's record and the job's progress; idempotent per (job, epoch). False: not ours."""
    lost = record_group_epoch(session, records=[(job_id, attempt, record)], checkpoints=[])
    return not lost


def record_group_epoch(
    session: Session, *, records: list[tuple[str, str, dict[str, Any]]], checkpoints: list[dict[str, Any]]
) -> list[str]:
    """Epoch rows (job, attempt, record) and checkpoint promotions of one or more jobs (a replica group's
    epoch) in one transaction of a few statements, each fenced by its job's attempt; returns the jobs
    whose attempt no longer owns them (they write nothing)."""
    owners = {(job_id, attempt) for job_id, attempt, _ in records}
    owners |= {(checkpoint["job_id"], checkpoint["attempt"]) for checkpoint in checkpoints}
    held = _lock_owned(session, owners)
    _store_epochs(session, held, [(job_id, record) for job_id, _, record in records if job_id in held])
    _store_checkpoints(session, [c for c in checkpoints if c["job_id"] in held])
    session.commit()
    return sorted({job_id for job_id, _ in owners} - held.keys())


def _store_epochs(
    session: Session, held: dict[str, Progress], records: list[tuple[str, dict[str, Any]]]
) -> None:
    """Upsert epoch rows and the jobs' progress, in the records' order (the caller holds the jobs' rows)."""
    if not records:
        return
    now = utcnow()
    rows = [
        {"job_id": job_id, "epoch": int(r["epoch"]), "record": r, "created_at": now} for job_id, r in records
    ]
    _upsert(session, EpochMetric, rows, ["job_id", "epoch"])
    progress: dict[str, Progress] = {}
    for job_id, record in records:
        mean, done = progress.get(job_id, held[job_id])
        seconds = record.get("seconds")
        if isinstance(seconds, int | float):
            # A running mean over epochs, for the ETA; a re-recorded epoch just nudges it.
            mean = seconds if mean is None else (mean * max(done, 0) + seconds) / (max(done, 0) + 1)
        progress[job_id] = (mean, int(record["epoch"]))
    session.connection().execute(
        update(Job)
        .where(Job.id == bindparam("job"))
        .values(epoch=bindparam("done"), epoch_seconds=bindparam("mean"), heartbeat_at=now),
        [{"job": job_id, "mean": mean, "done": done} for job_id, (mean, done) in progress.items()],
    )


def is_cancel_requested(session: Session, *, job_id: str) -> bool:
    """Whether someone asked to cancel the job (a missing job counts as cancelled: it was deleted)."""
    requested = session.execute(select(Job.cancel_requested).where(Job.id == job_id)).scalar_one_or_none()
    return requested is None or bool(requested)


def record_checkpoint(
    session: Session, *, job_id: str, attempt: str, name: str, uri: str, epoch: int, size_bytes: int
) -> bool:
    """Promote an uploaded checkpoint (the row readers and resumes follow); False: not ours."""
    if not _hold(session, job_id, attempt):
        return False
    _store_checkpoints(
        session, [{"job_id": job_id, "name": name, "uri": uri, "epoch": epoch, "size_bytes": size_bytes}]
    )
    session.commit()
    return True


def _store_checkpoints(session: Session, checkpoints: list[dict[str, Any]]) -> None:
    """Upsert the checkpoint rows readers and resumes follow (the caller holds the jobs' rows)."""
    now = utcnow()
    columns = ("job_id", "name", "uri", "epoch", "size_bytes")
    rows = [{**{k: c[k] for k in columns}, "updated_at": now} for c in checkpoints]
    _upsert(session, Checkpoint, rows, ["job_id", "name"])


def finish_job(
    session: Session,
    *,
    job_id: str,
    attempt: str,
    status: JobStatus,
    result: dict[str, Any] | None = None,
    error: str | None = None,
) -> bool:
    """End a running job as succeeded, failed or cancelled; False when the attempt no longer owns it.

    `succeeded` needs a result and a stored record for every epoch it ran (a resumed run that had
    nothing left to do included); otherwise the job fails, saying which epochs are missing.
    """
    if not _hold(session, job_id, attempt):
        return False
    if status == JobStatus.succeeded:
        missing = unrecorded_epochs(session, job_id=job_id, result=result)
        if missing:
            status, error = JobStatus.failed, missing
    now = utcnow()
    finished = session.execute(
        update(Job)
        .where(_owned(job_id, attempt))
        .values(status=status, result=result, error=error, finished_at=now, heartbeat_at=now)
        .execution_options(synchronize_session=False)
    )
    if finished.rowcount:  # type: ignore[attr-defined]
        store_curves(session, job_id)  # its epochs are final now: no write of a finished job is accepted
    return _commit_changed(session, finished)


def unrecorded_epochs(session: Session, *, job_id: str, result: dict[str, Any] | None) -> str | None:
    """Why a run may not count as succeeded (no result, or epochs without a stored record); None if fine."""
    if not result:
        return "training ended without a result; run the job again"
    ran = int(result.get("epochs_run") or 0)
    stored = set(
        session.scalars(
            select(EpochMetric.epoch).where(EpochMetric.job_id == job_id, EpochMetric.epoch <= ran)
        )
    )
    missing = [epoch for epoch in range(1, ran + 1) if epoch not in stored]
    if not missing:
        return None
    shown = ", ".join(map(str, missing[:10])) + (", ..." if len(missing) > 10 else "")
    return f"training ran {ran} epochs but {len(missing)} have no stored record ({shown}); run the job again"


def hand_back(session: Session, *, job_id: str, attempt: str) -> bool:
    """Return a running job to the queue (the worker is shutting down); it resumes from `last`.

    The claim is taken back too: a graceful hand-back is not a lost attempt, so restarts of workers
    never bring a job closer to failing as lost (max_attempts counts claims that ended in a loss).
    """
    handed = session.execute(
        update(Job)
        .where(_owned(job_id, attempt))
        .values(
            status=JobStatus.queued,
            worker=None,
            attempt=None,
            queued_at=utcnow(),
            attempts=Job.attempts - 1,
        )
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
                store_curves(session, job_id)
                outcome.failed.append(job_id)
            continue
        changed = session.execute(
            update(Job)
            .where(still_stale)
            .values(status=JobStatus.queued, worker=None, attempt=None, queued_at=now)
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
