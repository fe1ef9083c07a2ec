"""DB <-> training glue: claim a job, train it with callbacks that report back, and end it."""

from __future__ import annotations

import logging
import multiprocessing
import re
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

from celery import Celery
from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.orm import Session, sessionmaker

from core import lifecycle
from core.artifacts import ArtifactStore, checkpoint_key
from core.broker import publish_job
from core.config import Settings
from core.db import make_engine, make_session_factory
from core.models import Checkpoint, Dataset, Job, JobStatus
from core.models.job import requested_device
from training.callbacks import Callback, CheckpointInfo
from training.records import EpochRecord
from training.spec import FileDatasetSpec, JobSpec, UploadedDatasetSpec

log = logging.getLogger(__name__)

T = TypeVar("T")
CANCEL_POLL_S = 0.5  # how stale a cancel request may be when the loop asks should_stop()
DB_RETRY_FOR_S = 120.0  # how long a write waits out an unreachable database before the job gives up

# Set when the worker is asked to stop (SIGTERM): running jobs checkpoint and are handed back. A
# process-shared event, created before the pool forks, so the main process can tell its pool children.
shutdown_requested = multiprocessing.Event()


class JobLost(Exception):
    """The job is no longer this worker's: it was re-queued, cancelled or deleted meanwhile."""


@dataclass(frozen=True)
class WorkerIdentity:
    """Who runs the job: the name stored on the job and the worker beat row."""

    name: str
    device: str
    queues: str
    node: str | None = None  # the Celery worker this process belongs to
    host: str | None = None
    pid: int | None = None  # the Celery worker's main process
    concurrency: int | None = None


class WorkerContext:
    """Per-process resources: engine, sessions, artifact store (built lazily, after any fork)."""

    def __init__(self, settings: Settings, identity: WorkerIdentity, celery_app: Celery) -> None:
        self.settings = settings
        self.celery_app = celery_app
        self.identity = identity
        self.engine = make_engine(settings.resolved_database_url)
        self.sessions: sessionmaker[Session] = make_session_factory(self.engine)
        self.store = ArtifactStore(settings.resolved_artifacts_url)
        self.current_job_id: str | None = None

    def write(self, action: Callable[[Session], T]) -> T:
        """Run `action` in one transaction, retrying with backoff while the database is unreachable."""
        return with_db_retry(lambda: _in_transaction(self.sessions, action), give_up_after=DB_RETRY_FOR_S)

    def beat(self, current_job_id: str | None, *, retry: bool = True) -> None:
        """Record that this worker is alive (and what it runs)."""
        identity = self.identity
        self.current_job_id = current_job_id
        (self.write if retry else partial(_in_transaction, self.sessions))(
            lambda s: lifecycle.record_worker_beat(
                s,
                name=identity.name,
                device=identity.device,
                queues=identity.queues,
                current_job_id=current_job_id,
                node=identity.node,
                host=identity.host,
                pid=identity.pid,
                concurrency=identity.concurrency,
            )
        )

    def start_beating(self, every: float) -> None:
        """Beat from a daemon thread, so that an idle worker is still seen by health checks."""

        def loop() -> None:
            while not shutdown_requested.wait(every):
                try:
                    self.beat(self.current_job_id, retry=False)
                except Exception:
                    log.debug("worker beat failed; next one in %.0f s", every, exc_info=True)

        threading.Thread(target=loop, name="trainctl-worker-beat", daemon=True).start()


def _in_transaction(sessions: sessionmaker[Session], action: Callable[[Session], T]) -> T:
    # The lifecycle functions commit what they write; closing the session ends a read's transaction.
    with sessions() as session:
        return action(session)


def with_db_retry(action: Callable[[], T], *, give_up_after: float) -> T:
    """Call `action`, retrying connection-level database errors with exponential backoff."""
    deadline = time.monotonic() + give_up_after
    delay = 0.1
    while True:
        try:
            return action()
        except DBAPIError as error:
            transient = is_transient(error)
            if not transient or time.monotonic() + delay > deadline:
                raise
            log.warning("database unavailable (%s); retrying in %.1f s", type(error.orig).__name__, delay)
            time.sleep(delay)
            delay = min(delay * 2, 5.0)


def is_transient(error: DBAPIError) -> bool:
    """Errors that say "try again later": a lost connection, a server restarting, a locked SQLite file."""
    if error.connection_invalidated:
        return True
    if not isinstance(error, OperationalError):
        return False
    # SQLite reports a missing table as an OperationalError too; that one will not heal by waiting.
    return "no such" not in str(error.orig)


class ServiceCallback(Callback):
    """Reports a running fit() back to the service: metrics rows, checkpoints, heartbeats, cancellation."""

    def __init__(self, context: WorkerContext, job_id: str) -> None:
        self.context = context
        self.job_id = job_id
        self.lost = False
        self.cancel_requested = False
        self._next_poll = 0.0
        self._next_beat = 0.0
        # Often enough that a live job never looks stale, rarely enough to spare the database.
        self._beat_every = max(CANCEL_POLL_S, min(10.0, context.settings.heartbeat_timeout / 4))

    def on_epoch_end(self, record: EpochRecord) -> None:
        """One metrics row per epoch, with the heartbeat, in one transaction."""
        worker = self.context.identity.name
        row = record.model_dump(mode="json")
        if not self.context.write(
            lambda s: lifecycle.record_epoch(s, job_id=self.job_id, worker=worker, record=row)
        ):
            self.lost = True

    def on_checkpoint(self, info: CheckpointInfo) -> None:
        """Upload the checkpoint to the artifact store, then record where it is."""
        key = checkpoint_key(self.job_id, info.name)
        self.context.store.put_file(info.path, key)
        size = info.path.stat().st_size
        self.context.write(
            lambda s: lifecycle.record_checkpoint(
                s, job_id=self.job_id, name=info.name, uri=key, epoch=info.epoch, size_bytes=size
            )
        )

    def should_stop(self) -> bool:
        """Stop on shutdown, a cancel request or a lost job; reads the database at most every 0.5 s."""
        if shutdown_requested.is_set() or self.lost or self.cancel_requested:
            return True
        now = time.monotonic()
        if now < self._next_poll:
            return False
        self._next_poll = now + CANCEL_POLL_S
        beating = True
        try:
            with self.context.sessions() as session:
                self.cancel_requested = lifecycle.is_cancel_requested(session, job_id=self.job_id)
                if now >= self._next_beat:
                    self._next_beat = now + self._beat_every
                    worker = self.context.identity.name
                    beating = lifecycle.heartbeat(session, job_id=self.job_id, worker=worker)
        except DBAPIError:
            # An unreachable database must not stop training: the epoch write waits it out instead.
            log.warning("could not poll job %s; training on", self.job_id)
            return False
        self.lost = self.lost or (not beating and not self.cancel_requested)
        return self.cancel_requested or self.lost


def run_job(context: WorkerContext, job_id: str) -> str:
    """Claim and run one job; returns what happened (skipped, succeeded, failed, cancelled, handed back)."""
    identity = context.identity
    if not context.write(
        lambda s: lifecycle.claim_job(s, job_id=job_id, worker=identity.name, device=identity.device)
    ):
        log.info("job %s is not queued (a duplicate delivery, or already taken): skipped", job_id)
        return "skipped"
    log.info("job %s claimed by %s", job_id, identity.name)
    context.beat(job_id)
    try:
        return _train(context, job_id)
    finally:
        context.beat(None)


def _train(context: WorkerContext, job_id: str) -> str:
    worker = context.identity.name
    callback = ServiceCallback(context, job_id)

    def finish(status: JobStatus, result: dict[str, Any] | None = None, error: str | None = None) -> str:
        done = context.write(
            lambda s: lifecycle.finish_job(
                s, job_id=job_id, worker=worker, status=status, result=result, error=error
            )
        )
        return status.value if done else "lost"

    with tempfile.TemporaryDirectory(prefix=f"trainctl-{job_id}-") as scratch:
        out_dir = Path(scratch)
        try:
            job = _load_job(context, job_id)
            if job["cancel_requested"]:
                return finish(JobStatus.cancelled, error="cancelled before it started")
            spec = _resolve_dataset(context, JobSpec.model_validate(job["spec"]), out_dir / "data")
            # An earlier attempt (lost, or handed back at shutdown) left a `last` checkpoint: continue it.
            resume = _fetch_last_checkpoint(context, job_id, out_dir)

            import training  # torch was imported and warmed when the worker process started

            result = training.fit(spec, out_dir=out_dir / "run", callbacks=[callback], resume=resume)
        except Exception as error:
            log.exception("job %s failed", job_id)
            return finish(JobStatus.failed, error=describe_error(error))

        outcome = result.model_dump(mode="json")
        if callback.lost:
            log.warning("job %s was taken from this worker while it ran; its result is dropped", job_id)
            return "lost"
        if result.status == "cancelled" and shutdown_requested.is_set() and not callback.cancel_requested:
            return _hand_back(context, job_id, job["device"])
        if result.status == "succeeded":
            return finish(JobStatus.succeeded, result=outcome)
        if result.status == "cancelled":
            return finish(JobStatus.cancelled, result=outcome, error="cancelled on request")
        return finish(JobStatus.failed, result=outcome, error=result.error or "training failed")


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


def _hand_back(context: WorkerContext, job_id: str, device: str) -> str:
    """Shutting down: give the job back to the queue; it resumes from its `last` checkpoint elsewhere."""
    worker = context.identity.name
    if not context.write(lambda s: lifecycle.hand_back(s, job_id=job_id, worker=worker)):
        return "lost"
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
