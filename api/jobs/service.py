"""Submitting, listing, reading, cancelling and deleting jobs (no FastAPI here)."""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import logging
import secrets
import shutil
from datetime import datetime
from pathlib import Path
from typing import Any

from celery import Celery
from sqlalchemy import delete, func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from api.errors import Conflict, NotFound, TooManyRequests, Unprocessable
from api.jobs.schemas import JobCreate, JobDetail, JobSummary, JobUpdate, Progress
from api.specs.service import check_spec
from api.storage import check_jobs_fit
from core import broker
from core.artifacts import ArtifactStore
from core.config import Settings
from core.db import utcnow
from core.models import Checkpoint, EpochMetric, Job, JobCurve, JobCurveField, JobStatus, JobTag
from core.models.job import FINISHED, requested_device
from training.records import RunResult
from training.spec import JobSpec, SpecWarning

log = logging.getLogger(__name__)
MAX_PAGE_SIZE = 100


def new_job_id() -> str:
    """A random, URL-safe job id."""
    return "job_" + secrets.token_hex(8)


def request_hash(request: JobCreate) -> str:
    """sha256 of the request's canonical JSON (defaults filled in, keys sorted): equal bodies, equal hash."""
    canonical = json.dumps(request.model_dump(mode="json"), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


def owned_job(session: Session, *, owner: str, job_id: str) -> Job:
    """The owner's job; NotFound for a missing job and for another owner's (they look the same)."""
    job = session.scalar(select(Job).where(Job.id == job_id, Job.owner == owner))
    if job is None:
        raise NotFound(f"no job with id {job_id!r}")
    return job


def _progress(job: Job) -> Progress:
    eta = None
    if job.status == JobStatus.running and job.epoch_seconds is not None:
        eta = round(max(job.epochs - job.epoch, 0) * job.epoch_seconds, 3)
    return Progress(epoch=job.epoch, epochs=job.epochs, eta_seconds=eta)


def _result(job: Job) -> RunResult | None:
    return RunResult.model_validate(job.result) if job.result else None


def to_summary(job: Job) -> JobSummary:
    """The listed form of a job."""
    return JobSummary(
        id=job.id,
        name=job.name,
        tags=sorted(tag.tag for tag in job.tags),
        status=JobStatus(job.status),
        progress=_progress(job),
        result=_result(job),
        error=job.error,
        created_at=job.created_at,
        started_at=job.started_at,
        finished_at=job.finished_at,
        sweep_id=job.sweep_id,
        replica_group=job.replica_group,
        notes=job.notes,
    )


def to_detail(job: Job) -> JobDetail:
    """Everything known about a job."""
    return JobDetail(
        **to_summary(job).model_dump(),
        spec=JobSpec.model_validate(job.spec),
        warnings=[SpecWarning.model_validate(warning) for warning in job.warnings or []],
        cancel_requested=job.cancel_requested,
        worker=job.worker,
        device=job.device,
        attempts=job.attempts,
        queued_at=job.queued_at,
        heartbeat_at=job.heartbeat_at,
        sweep_params=job.sweep_params,
    )


def _replay(session: Session, *, owner: str, idempotency_key: str, body_hash: str) -> Job | None:
    """The job an earlier request with this key created; Conflict if that request had another body."""
    job = session.scalar(select(Job).where(Job.owner == owner, Job.idempotency_key == idempotency_key))
    if job is not None and job.request_hash != body_hash:
        raise Conflict(
            f"Idempotency-Key {idempotency_key!r} was already used with a different request body "
            f"(job {job.id}); use a new key for a new job"
        )
    return job


def submit_job(
    session: Session,
    *,
    owner: str,
    request: JobCreate,
    settings: Settings,
    celery_app: Celery,
    idempotency_key: str | None = None,
) -> tuple[JobDetail, bool]:
    """Validate, insert a queued job, commit, then publish its id; returns (job, created)."""
    body_hash = request_hash(request)
    if idempotency_key is not None:
        earlier = _replay(session, owner=owner, idempotency_key=idempotency_key, body_hash=body_hash)
        if earlier is not None:
            return to_detail(earlier), False
    spec = request.spec
    _shape, parameters, warnings = check_spec(session, owner=owner, spec=spec, settings=settings)
    check_queue_quota(session, owner=owner, settings=settings, adding=1)
    check_jobs_fit(session, owner=owner, settings=settings, jobs=[(spec, parameters)])
    job = new_job_row(
        owner=owner,
        name=request.name,
        tags=request.tags,
        spec=spec,
        warnings=warnings,
        idempotency_key=idempotency_key,
        request_hash=body_hash,
    )
    session.add(job)
    try:
        session.commit()
    except IntegrityError:
        # A concurrent request with the same key won the race: answer as its replay.
        session.rollback()
        if idempotency_key is None:
            raise
        earlier = _replay(session, owner=owner, idempotency_key=idempotency_key, body_hash=body_hash)
        if earlier is None:
            raise
        return to_detail(earlier), False
    publish_job(celery_app, job, settings=settings)
    return to_detail(job), True


def check_queue_quota(session: Session, *, owner: str, settings: Settings, adding: int) -> None:
    """TooManyRequests when `adding` more queued jobs would put the owner over their quota."""
    waiting = session.scalar(
        select(func.count()).select_from(Job).where(Job.owner == owner, Job.status == JobStatus.queued)
    )
    limit = settings.max_queued_jobs_per_owner
    if (waiting or 0) + adding > limit:
        more = f" and this request adds {adding}" if adding > 1 else ""
        raise TooManyRequests(
            f"you have {waiting} queued jobs{more}, the limit is {limit} "
            "(TRAINCTL_MAX_QUEUED_JOBS_PER_OWNER); wait for some to start, or cancel some"
        )


def new_job_row(
    *,
    owner: str,
    name: str | None,
    tags: list[str],
    spec: JobSpec,
    warnings: list[SpecWarning],
    idempotency_key: str | None = None,
    request_hash: str | None = None,
    sweep_id: str | None = None,
    sweep_params: dict[str, Any] | None = None,
) -> Job:
    """A queued job row for a checked spec (the one place job rows are made; the caller adds and commits)."""
    return Job(
        id=new_job_id(),
        owner=owner,
        name=name,
        spec=spec.model_dump(mode="json"),
        status=JobStatus.queued,
        warnings=[warning.model_dump() for warning in warnings],
        idempotency_key=idempotency_key,
        request_hash=request_hash,
        cancel_requested=False,
        epoch=0,
        epochs=spec.training.epochs,
        attempts=0,
        tags=[JobTag(tag=tag) for tag in dict.fromkeys(tags)],
        sweep_id=sweep_id,
        sweep_params=sweep_params,
    )


def publish_job(celery_app: Celery, job: Job, *, settings: Settings) -> None:
    """Hand a committed job's id to the workers; a broker failure is logged, the sweep re-publishes."""
    # After the commit: a worker that receives the id must find the row. A lost message is re-published
    # by the sweep, so a broker failure here does not fail the request.
    try:
        broker.publish_job(
            celery_app, job.id, device=requested_device(job.spec), default_queue=settings.default_queue
        )
    except Exception as error:  # kombu raises transport-specific types
        log.warning(
            "job %s stored but not published (%s); the sweep will publish it", job.id, type(error).__name__
        )


def encode_cursor(created_at: datetime, row_id: str) -> str:
    """An opaque keyset cursor: the (created_at, id) of the last row of a page."""
    raw = json.dumps([created_at.isoformat(), row_id]).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[datetime, str]:
    """(created_at, id) from a cursor; 422 naming `cursor` for anything this service did not return."""
    try:
        created, job_id = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
        return datetime.fromisoformat(created), str(job_id)
    except (ValueError, TypeError, binascii.Error, UnicodeDecodeError):
        raise Unprocessable.for_field(
            "cursor", "not a cursor this service returned; start without one"
        ) from None


def get_job(session: Session, *, owner: str, job_id: str) -> JobDetail:
    """One of the owner's jobs."""
    return to_detail(owned_job(session, owner=owner, job_id=job_id))


def set_tags(job: Job, tags: list[str]) -> None:
    """Replace a job's tags (keeping the rows of tags it keeps: a tag row is its primary key)."""
    wanted = list(dict.fromkeys(tags))
    job.tags = [row for row in job.tags if row.tag in wanted]
    kept = {row.tag for row in job.tags}
    job.tags.extend(JobTag(tag=tag) for tag in wanted if tag not in kept)


def update_job(session: Session, *, owner: str, job_id: str, changes: JobUpdate) -> JobDetail:
    """Set the name, tags or notes given (null clears name and notes); the spec and results never change."""
    job = owned_job(session, owner=owner, job_id=job_id)
    given = changes.model_fields_set
    if "name" in given:
        job.name = changes.name
    if "notes" in given:
        job.notes = changes.notes
    if "tags" in given:
        set_tags(job, changes.tags or [])
    session.commit()
    session.refresh(job)
    return to_detail(job)


def request_cancel(session: Session, *where: Any, reason: str) -> None:
    """Cancel the matching jobs: queued ones at once, running ones by flag (the worker stops them).

    Conditional updates, so a worker claiming a job at this moment is never overwritten.
    """
    session.execute(
        update(Job)
        .where(*where, Job.status == JobStatus.queued)
        .values(status=JobStatus.cancelled, cancel_requested=True, finished_at=utcnow(), error=reason)
        .execution_options(synchronize_session=False)
    )
    session.execute(
        update(Job)
        .where(*where, Job.status == JobStatus.running)
        .values(cancel_requested=True)
        .execution_options(synchronize_session=False)
    )


def cancel_job(session: Session, *, owner: str, job_id: str) -> JobDetail:
    """Queued: cancelled at once. Running: flagged, the worker stops it. Succeeded or failed: Conflict."""
    request_cancel(session, Job.id == job_id, Job.owner == owner, reason="cancelled before it ran")
    session.commit()
    job = owned_job(session, owner=owner, job_id=job_id)
    session.refresh(job)
    if job.status in (JobStatus.succeeded, JobStatus.failed):
        raise Conflict(f"job {job_id} has already {job.status}; there is nothing to cancel")
    return to_detail(job)


def delete_job(
    session: Session, *, owner: str, job_id: str, artifacts: ArtifactStore, cache_dir: Path
) -> None:
    """Remove a finished job's rows, stored files and cached model; Conflict while queued or running."""
    job = owned_job(session, owner=owner, job_id=job_id)
    if job.status not in FINISHED:
        raise Conflict(
            f"job {job_id} is {job.status}; cancel it (POST /v1/jobs/{job_id}/cancel) and wait for it to end"
        )
    delete_job_rows(session, [job])
    session.commit()
    delete_job_files([job_id], artifacts=artifacts, cache_dir=cache_dir)


def delete_job_rows(session: Session, jobs: list[Job]) -> None:
    """Delete finished jobs with their metrics and checkpoint rows (the caller commits, then the files)."""
    # Explicit deletes: SQLite cascades only with foreign keys on, and no backend should depend on that.
    ids = [job.id for job in jobs]
    session.execute(delete(EpochMetric).where(EpochMetric.job_id.in_(ids)))
    session.execute(delete(Checkpoint).where(Checkpoint.job_id.in_(ids)))
    session.execute(delete(JobCurveField).where(JobCurveField.job_id.in_(ids)))
    session.execute(delete(JobCurve).where(JobCurve.job_id.in_(ids)))
    for job in jobs:
        session.delete(job)


def delete_job_files(job_ids: list[str], *, artifacts: ArtifactStore, cache_dir: Path) -> None:
    """Remove deleted jobs' stored files and cached models (after the commit: rows first, then bytes)."""
    for job_id in job_ids:
        artifacts.delete_prefix(f"jobs/{job_id}")
        shutil.rmtree(cache_dir / job_id, ignore_errors=True)
