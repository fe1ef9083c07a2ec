"""A long phase is not a dead worker; a replaced attempt stops at its next step and writes nothing more.

The runner runs in this process against a real database; a rival thread plays the reaper and a second
worker (re-queue what looks stale, claim what is queued), as they would run elsewhere.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import create_engine, select

from core import lifecycle
from core.broker import make_celery
from core.config import Settings
from core.db import make_session_factory, session_scope
from core.models import Checkpoint, EpochMetric, Job, JobStatus
from worker.context import WorkerContext, WorkerIdentity
from worker.heartbeat import JobHeartbeat
from worker.runner import run_job

# Short, to keep the test fast, yet with seconds of slack: on a loaded machine a beat (a committed UPDATE)
# can lag by more than a second, and one lag past the timeout would look like a dead worker.
HEARTBEAT_TIMEOUT_S = 4.0


def spec(epochs: int) -> dict[str, Any]:
    return {
        "dataset": {"name": "moons", "samples": 400},
        "network": {"type": "mlp", "hidden_layers": [8]},
        "training": {"epochs": epochs, "batch_size": 32, "seed": 0, "checkpoint_every": 1},
    }


@pytest.fixture
def context(settings: Settings) -> Iterator[WorkerContext]:
    settings.heartbeat_timeout = HEARTBEAT_TIMEOUT_S
    celery_app = make_celery(settings)
    identity = WorkerIdentity(name=f"test:{uuid.uuid4().hex[:6]}", device="cpu", queues="cpu")
    context = WorkerContext(settings, identity, celery_app)
    yield context
    context.engine.dispose()
    celery_app.close()


def add_job(context: WorkerContext, epochs: int) -> str:
    job_id = f"job_{uuid.uuid4().hex[:16]}"
    with session_scope(context.sessions) as session:
        session.add(Job(id=job_id, owner="alice", spec=spec(epochs), epochs=epochs))
    return job_id


def slow_validation(monkeypatch: pytest.MonkeyPatch, seconds: float) -> None:
    """Make each epoch's validation take `seconds` longer (the engine's own evaluate, then a wait)."""
    from training.loop import Trainer

    original = Trainer.evaluate

    def slow(self: Trainer, X: Any, y: Any, **options: Any) -> Any:
        if X is self.data.X_val:
            time.sleep(seconds)
        return original(self, X, y, **options)

    monkeypatch.setattr(Trainer, "evaluate", slow)


class Rival(threading.Thread):
    """The reaper and a second worker: re-queue jobs silent for the timeout, claim queued ones."""

    def __init__(self, context: WorkerContext, job_id: str) -> None:
        super().__init__(daemon=True)
        self.context, self.job_id = context, job_id
        self.requeued: list[str] = []
        self.claims: list[str] = []
        self.stopped = threading.Event()

    def run(self) -> None:
        while not self.stopped.wait(0.2):
            with self.context.sessions() as session:
                outcome = lifecycle.requeue_stale(session, timeout=HEARTBEAT_TIMEOUT_S, max_attempts=9)
                self.requeued += [job_id for job_id, _ in outcome.republish]
                attempt = lifecycle.claim_job(session, job_id=self.job_id, worker="rival", device="cpu")
                if attempt is not None:
                    self.claims.append(attempt)


def test_validation_longer_than_the_heartbeat_timeout_is_never_claimed_twice(
    context: WorkerContext, monkeypatch: pytest.MonkeyPatch
) -> None:
    slow_validation(monkeypatch, 1.5 * HEARTBEAT_TIMEOUT_S)
    job_id = add_job(context, epochs=2)
    rival = Rival(context, job_id)
    rival.start()
    try:
        outcome = run_job(context, job_id)
    finally:
        rival.stopped.set()
        rival.join()
    assert outcome == "succeeded"
    assert rival.requeued == [] and rival.claims == [], "a job in a long validation looked dead"
    with context.sessions() as session:
        job = session.get(Job, job_id)
        epochs = session.scalars(select(EpochMetric.epoch).where(EpochMetric.job_id == job_id)).all()
    assert job is not None and (job.status, job.attempts) == (JobStatus.succeeded, 1)
    assert sorted(epochs) == [1, 2], "every epoch recorded once"
    assert job.result is not None and job.result["epochs_run"] == 2


def test_a_replaced_attempt_stops_at_its_next_step_and_writes_nothing_more(context: WorkerContext) -> None:
    job_id = add_job(context, epochs=500)
    outcome: list[str] = []
    runner = threading.Thread(target=lambda: outcome.append(run_job(context, job_id)), daemon=True)
    runner.start()

    def recorded() -> int:
        with context.sessions() as session:
            return len(session.scalars(select(EpochMetric.epoch).where(EpochMetric.job_id == job_id)).all())

    deadline = time.monotonic() + 60
    while recorded() < 2:
        assert time.monotonic() < deadline and runner.is_alive(), "the job never got going"
        time.sleep(0.05)
    with context.sessions() as session:  # replaced behind its back: re-queued, and claimed by another
        lifecycle.requeue_stale(session, timeout=0, max_attempts=9, now=lifecycle.utcnow() + _minute())
        second = lifecycle.claim_job(session, job_id=job_id, worker="rival", device="cpu")
    assert second is not None
    with context.sessions() as session:
        epochs_then = sorted(session.scalars(select(EpochMetric.epoch).where(EpochMetric.job_id == job_id)))
        checkpoints_then = {(c.name, c.uri, c.epoch) for c in session.scalars(select(Checkpoint))}
    stopped_at = time.monotonic()
    runner.join(30)
    assert not runner.is_alive() and outcome == ["lost"]
    assert time.monotonic() - stopped_at < 10, "it stops at its next step, not at the end of the run"
    with context.sessions() as session:
        job = session.get(Job, job_id)
        epochs_now = sorted(session.scalars(select(EpochMetric.epoch).where(EpochMetric.job_id == job_id)))
        checkpoints_now = {(c.name, c.uri, c.epoch) for c in session.scalars(select(Checkpoint))}
    assert job is not None and (job.status, job.attempt, job.worker) == (JobStatus.running, second, "rival")
    assert epochs_now == epochs_then and checkpoints_now == checkpoints_then


def test_a_worker_that_cannot_write_its_heartbeat_stops_its_job() -> None:
    unreachable = create_engine("postgresql+psycopg://postgres@127.0.0.1:1/nowhere?connect_timeout=1")
    heartbeat = JobHeartbeat(make_session_factory(unreachable), job_id="j", attempt="a", timeout=1.0)
    started = time.monotonic()
    heartbeat.start()
    heartbeat.join(15)
    assert heartbeat.expired.is_set() and heartbeat.must_stop
    assert time.monotonic() - started < 10
    unreachable.dispose()


def _minute() -> Any:
    from datetime import timedelta

    return timedelta(seconds=60)
