"""A worker process's resources and the database retry its writes go through."""

from __future__ import annotations

import logging
import multiprocessing
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import TypeVar

from celery import Celery
from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.orm import Session, sessionmaker

from core import lifecycle
from core.artifacts import ArtifactStore
from core.config import Settings
from core.db import engine_for, make_session_factory

log = logging.getLogger(__name__)

T = TypeVar("T")
DB_RETRY_FOR_S = 120.0  # how long a write waits out an unreachable database before the job gives up

# Set when the worker is asked to stop (SIGTERM): running jobs checkpoint and are handed back. A
# process-shared event, created before the pool forks, so the main process can tell its pool children.
shutdown_requested = multiprocessing.Event()


def request_shutdown() -> None:
    """Set shutdown_requested without ever blocking the caller: safe in a signal handler.

    The event's lock is not reentrant: a handler that set it while the code it interrupted held that lock
    (inside is_set, wait or an earlier set) would deadlock the worker for good, so a short thread sets it.
    """
    threading.Thread(target=shutdown_requested.set, name="trainctl-request-shutdown", daemon=True).start()


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
        self.engine = engine_for(settings)
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
