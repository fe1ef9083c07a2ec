"""DB <-> training glue: claim a job, train it with callbacks that report back, and end it."""

from __future__ import annotations

import logging
import re
import tempfile
import time
from functools import partial
from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from core import fairshare, lifecycle
from core.artifacts import checkpoint_key
from core.broker import publish_job
from core.models import Checkpoint, Dataset, Job, JobStatus
from core.models.job import requested_device
from training.callbacks import Callback, CheckpointInfo
from training.download import DatasetCache, using_cache
from training.records import EpochRecord, RunResult
from training.spec import FileDatasetSpec, JobSpec, UploadedDatasetSpec
from worker.context import JobLost, WorkerContext, shutdown_requested
from worker.heartbeat import JobHeartbeat
from worker.retention import drop_old_periodic, is_periodic

log = logging.getLogger(__name__)

HAND_BACK_AFTER_S = 10.0  # at shutdown, fit() has this long to reach a step before the job is handed back
CLAIM_TRIES = 3  # picks when another worker claims the picked job first


class ServiceCallback(Callback):
    """Reports a running fit() back to the service: metrics rows and checkpoints, fenced by the attempt."""

    def __init__(self, context: WorkerContext, job_id: str, attempt: str, heartbeat: JobHeartbeat) -> None:
        self.context, self.job_id, self.attempt, self.heartbeat = context, job_id, attempt, heartbeat
        self._replaced = False  # a write found the job owned by another attempt
        self.timed_out = False
        self._deadline = time.monotonic() + context.settings.max_job_seconds

    @property
    def lost(self) -> bool:
        """Whether this attempt no longer owns the job (or could not say so in time): it writes nothing."""
        return self._replaced or self.heartbeat.lost.is_set() or self.heartbeat.expired.is_set()

    @property
    def cancel_requested(self) -> bool:
        """Whether someone asked to cancel the job."""
        return self.heartbeat.cancel_requested.is_set()

    def on_epoch_end(self, record: EpochRecord) -> None:
        """One metrics row per epoch, with the heartbeat, in one transaction (only while ours)."""
        if self.lost:
            return
        row = record.model_dump(mode="json")
        if not self.context.write(
            lambda s: lifecycle.record_epoch(s, job_id=self.job_id, attempt=self.attempt, record=row)
        ):
            self._replaced = True

    def on_checkpoint(self, info: CheckpointInfo) -> None:
        """Upload under this attempt's own name, then promote it; a replaced attempt does neither."""
        if self.lost or not self.context.write(
            lambda s: lifecycle.holds(s, job_id=self.job_id, attempt=self.attempt)
        ):
            self._replaced = True
            return
        key = checkpoint_key(self.job_id, info.name, attempt=self.attempt)
        self.context.store.put_file(info.path, key)
        size = info.path.stat().st_size
        if not self.context.write(
            lambda s: lifecycle.record_checkpoint(
                s,
                job_id=self.job_id,
                attempt=self.attempt,
                name=info.name,
                uri=key,
                epoch=info.epoch,
                size_bytes=size,
            )
        ):
            self._replaced = True
            return
        if is_periodic(info.name):
            info.path.unlink(missing_ok=True)  # uploaded; a resume needs only `last` (and `best`)
            keep = self.context.settings.keep_checkpoints
            for stale in self.context.write(lambda s: drop_old_periodic(s, job_id=self.job_id, keep=keep)):
                self.context.store.delete_prefix(stale)

    def should_stop(self) -> bool:
        """Stop on shutdown, a cancel request, a lost attempt (flags the heartbeat thread keeps) or the
        run-time limit."""
        if shutdown_requested.is_set() or self.lost or self.heartbeat.must_stop or self.timed_out:
            return True
        self.timed_out = time.monotonic() > self._deadline
        return self.timed_out


def run_job(context: WorkerContext, job_id: str) -> str:
    """Take this slot's turn: claim the fairest queued job (fairshare) and run it; returns what happened."""
    identity = context.identity
    claimed = _claim_fair_job(context)
    if claimed is None:
        log.info("message for job %s: no queued job may start now (done, taken, or owners at cap)", job_id)
        return "skipped"
    chosen, attempt = claimed
    log.info(
        "job %s claimed by %s (attempt %s, for the message of %s)", chosen, identity.name, attempt, job_id
    )
    heartbeat = JobHeartbeat(
        context.sessions,
        job_id=chosen,
        attempt=attempt,
        timeout=context.settings.heartbeat_timeout,
        shutting_down=shutdown_requested.is_set,
        hand_back_after=HAND_BACK_AFTER_S,
        hand_back=lambda: _hand_back(context, chosen, attempt) == "handed back",
    )
    heartbeat.start()
    context.beat(chosen)
    try:
        return _train(context, chosen, attempt, heartbeat)
    finally:
        heartbeat.stop()
        context.beat(None)
        _wake_for_owner_of(context, chosen)


def _claim_fair_job(context: WorkerContext) -> tuple[str, str] | None:
    """Claim the job fairshare picks (again if another worker took it first): (job id, attempt token)."""
    identity, settings = context.identity, context.settings
    for _ in range(CLAIM_TRIES):
        chosen = context.write(
            lambda s: fairshare.pick_fair_job(
                s,
                queues=set(identity.queues.split(",")),
                default_queue=settings.default_queue,
                max_running_per_owner=settings.max_running_jobs_per_owner,
            )
        )
        if chosen is None:
            return None
        claim = partial(
            lifecycle.claim_job,
            job_id=chosen,
            worker=identity.name,
            device=identity.device,
            max_running_per_owner=settings.max_running_jobs_per_owner,
        )
        attempt = context.write(claim)
        if attempt is not None:
            return chosen, attempt
    return None


def _wake_for_owner_of(context: WorkerContext, job_id: str) -> None:
    """An owner back under the cap may have a job whose message was spent while they were at it."""
    cap = context.settings.max_running_jobs_per_owner

    def next_waiting(session: Session) -> tuple[str, dict] | None:
        job = session.get(Job, job_id)
        if job is None or fairshare.running_per_owner(session).get(job.owner, 0) != cap - 1:
            return None
        return fairshare.oldest_queued_of_owner(session, owner=job.owner)

    waiting = context.write(next_waiting)
    if waiting is not None:
        waiting_id, spec = waiting
        publish_job(
            context.celery_app,
            waiting_id,
            device=requested_device(spec),
            default_queue=context.settings.default_queue,
        )


def _train(context: WorkerContext, job_id: str, attempt: str, heartbeat: JobHeartbeat) -> str:
    callback = ServiceCallback(context, job_id, attempt, heartbeat)
    with tempfile.TemporaryDirectory(prefix=f"trainctl-{job_id}-") as scratch:
        out_dir = Path(scratch)
        try:
            job = _load_job(context, job_id)
            if job["cancel_requested"]:
                return finish(
                    context, job_id, attempt, JobStatus.cancelled, error="cancelled before it started"
                )
            spec = _resolve_dataset(context, JobSpec.model_validate(job["spec"]), out_dir / "data")
            # An earlier attempt (lost, or handed back at shutdown) left a `last` checkpoint: continue it.
            resume = _fetch_last_checkpoint(context, job_id, out_dir)

            import training  # torch was imported and warmed when the worker process started

            cache = DatasetCache(context.settings.resolved_dataset_cache, context.settings.dataset_mirror)
            with using_cache(cache):  # benchmarks are read from (and fetched into) this worker's cache
                result = training.fit(
                    spec,
                    out_dir=out_dir / "run",
                    callbacks=[callback],
                    resume=resume,
                    checkpoint_seconds=context.settings.checkpoint_seconds,
                )
        except Exception as error:
            log.exception("job %s failed", job_id)
            return finish(context, job_id, attempt, JobStatus.failed, error=describe_error(error))
        return conclude(context, callback, result)


def finish(
    context: WorkerContext,
    job_id: str,
    attempt: str,
    status: JobStatus,
    result: dict[str, Any] | None = None,
    error: str | None = None,
) -> str:
    """End a job this attempt runs; "lost" when the attempt no longer owns it."""
    done = context.write(
        lambda s: lifecycle.finish_job(
            s, job_id=job_id, attempt=attempt, status=status, result=result, error=error
        )
    )
    return status.value if done else "lost"


def conclude(context: WorkerContext, callback: ServiceCallback, result: RunResult) -> str:
    """Store what fit() returned for the callback's job (or hand it back when the worker is shutting down)."""
    job_id, attempt = callback.job_id, callback.attempt
    outcome = result.model_dump(mode="json")
    if callback.lost:
        log.warning("job %s is no longer this attempt's; its result is dropped", job_id)
        return "lost"
    if callback.timed_out:
        limit = context.settings.max_job_seconds
        return finish(
            context,
            job_id,
            attempt,
            JobStatus.failed,
            result=outcome,
            error=f"stopped after {limit:g} s, this service's limit on a job's run time "
            "(TRAINCTL_MAX_JOB_SECONDS): ask for fewer epochs, or a smaller network or dataset",
        )
    if result.status == "cancelled" and shutdown_requested.is_set() and not callback.cancel_requested:
        return _hand_back(context, job_id, attempt)
    if result.status == "succeeded":
        return finish(context, job_id, attempt, JobStatus.succeeded, result=outcome)
    if result.status == "cancelled":
        return finish(
            context, job_id, attempt, JobStatus.cancelled, result=outcome, error="cancelled on request"
        )
    error = result.error or "training failed"
    return finish(context, job_id, attempt, JobStatus.failed, result=outcome, error=error)


def _load_job(context: WorkerContext, job_id: str) -> dict[str, Any]:
    """The few fields the runner needs, as plain data (no ORM object leaves the session)."""

    def read(session: Session) -> dict[str, Any]:
        job = session.get(Job, job_id)
        if job is None:
            raise JobLost(f"job {job_id} was deleted")
        return {
            "spec": job.spec,
            "cancel_requested": job.cancel_requested,
            "device": requested_device(job.spec),
        }

    return context.write(read)


def _resolve_dataset(context: WorkerContext, spec: JobSpec, folder: Path) -> JobSpec:
    """Replace an uploaded dataset {"id"} by a local copy of its file (the engine reads files only)."""
    dataset = spec.dataset
    if not isinstance(dataset, UploadedDatasetSpec):
        return spec

    def read(session: Session) -> dict[str, Any]:
        row = session.get(Dataset, dataset.id)
        if row is None:
            raise ValueError(f"dataset {dataset.id!r} does not exist (was it deleted?)")
        return {"uri": row.uri, "format": row.format, "target": row.target, "task": row.task}

    row = context.write(read)
    try:
        local = context.store.get_file(row["uri"], folder / f"{dataset.id}.{row['format']}")
    except FileNotFoundError:
        raise ValueError(
            f"the file of uploaded dataset {dataset.id!r} is missing from the artifact store "
            "(deleted or lost there): upload the dataset again and submit with its new id"
        ) from None
    file_spec = FileDatasetSpec(
        path=str(local),
        target=row["target"],
        task=row["task"],
        validation_fraction=dataset.validation_fraction,
        test_fraction=dataset.test_fraction,
    )
    return spec.model_copy(update={"dataset": file_spec})


def _fetch_last_checkpoint(context: WorkerContext, job_id: str, out_dir: Path) -> bool:
    """Download the previous attempt's `last` checkpoint where fit(resume=True) looks for it."""

    def read(session: Session) -> str | None:
        checkpoint = session.get(Checkpoint, (job_id, "last"))
        return checkpoint.uri if checkpoint is not None else None

    uri = context.write(read)
    if uri is None or not context.store.exists(uri):
        return False
    context.store.get_file(uri, out_dir / "run" / "checkpoints" / "last.safetensors")
    log.info("job %s resumes from its last checkpoint", job_id)
    return True


def _hand_back(context: WorkerContext, job_id: str, attempt: str) -> str:
    """Shutting down: give the job back to the queue; it resumes from its `last` checkpoint elsewhere."""
    if not context.write(lambda s: lifecycle.hand_back(s, job_id=job_id, attempt=attempt)):
        return "lost"
    device = context.write(lambda s: requested_device(s.scalar(select(Job.spec).where(Job.id == job_id))))
    publish_job(context.celery_app, job_id, device=device, default_queue=context.settings.default_queue)
    log.info("job %s handed back before shutdown", job_id)
    return "handed back"


_CPU_OUT_OF_MEMORY = "can't allocate memory"


def describe_error(error: BaseException) -> str:
    """A reason a person can act on: the message, prefixed by the kind of error when it adds something."""
    message = str(error).strip() or "no details"
    if isinstance(error, ValueError | JobLost):
        return message
    if isinstance(error, MemoryError) or _CPU_OUT_OF_MEMORY in message:
        # torch's CPU allocator raises a plain RuntimeError; say what was asked for, not where it failed.
        asked = re.search(r"tried to allocate (\d+) bytes", message)
        tried = f" (one tensor needed {int(asked[1]) / 2**20:,.0f} MiB)" if asked else ""
        return (
            f"out of memory{tried}: make the network, batch_size or dataset smaller, "
            "or run it on a worker with more memory"
        )
    name = type(error).__name__
    if "OutOfMemory" in name:
        return f"out of GPU memory ({message.splitlines()[0]}): make the network or the batch smaller"
    return f"{name}: {message}"
