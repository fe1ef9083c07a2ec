"""Worker-side job lifecycle on real SQLite and PostgreSQL: conditional claim, idempotent writes, sweeps."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from core import lifecycle
from core.db import make_engine, make_session_factory, session_scope, utcnow
from core.models import Checkpoint, EpochMetric, Job, JobStatus, WorkerBeat

SPEC: dict[str, Any] = {"dataset": {"name": "iris"}, "network": {"hidden_layers": [4]}}


@pytest.fixture
def sessions(database_url: str) -> Iterator[sessionmaker[Session]]:
    engine = make_engine(database_url)
    yield make_session_factory(engine)
    engine.dispose()


def add_job(sessions: sessionmaker[Session], **values: Any) -> str:
    job_id = uuid.uuid4().hex
    with session_scope(sessions) as session:
        session.add(Job(id=job_id, owner="alice", spec=SPEC, epochs=5, **values))
    return job_id


def load(sessions: sessionmaker[Session], job_id: str) -> Job:
    with sessions() as session:
        job = session.get(Job, job_id)
        assert job is not None
        return job


def claim(sessions: sessionmaker[Session], job_id: str, worker: str = "w1") -> bool:
    with session_scope(sessions) as session:
        return lifecycle.claim_job(session, job_id=job_id, worker=worker, device="cpu")


def test_claim_is_conditional(sessions: sessionmaker[Session]) -> None:
    job_id = add_job(sessions)
    assert claim(sessions, job_id, "w1")
    assert not claim(sessions, job_id, "w2"), "a duplicate delivery must not claim the job again"
    job = load(sessions, job_id)
    assert (job.status, job.worker, job.attempts) == (JobStatus.running, "w1", 1)
    assert job.started_at is not None and job.heartbeat_at is not None


def test_record_epoch_is_idempotent_and_owned(sessions: sessionmaker[Session]) -> None:
    job_id = add_job(sessions)
    claim(sessions, job_id)
    for loss in (0.9, 0.8):  # the same epoch twice (a resumed run re-records it)
        with session_scope(sessions) as session:
            record = {"epoch": 1, "train_loss": loss, "seconds": 0.5}
            assert lifecycle.record_epoch(session, job_id=job_id, worker="w1", record=record)
    with session_scope(sessions) as session:
        assert not lifecycle.record_epoch(session, job_id=job_id, worker="other", record={"epoch": 2})
    with sessions() as session:
        rows = session.scalars(select(EpochMetric).where(EpochMetric.job_id == job_id)).all()
    assert [(row.epoch, row.record["train_loss"]) for row in rows] == [(1, 0.8)]
    job = load(sessions, job_id)
    assert job.epoch == 1 and job.epoch_seconds == pytest.approx(0.5)


def test_checkpoint_upsert_and_finish(sessions: sessionmaker[Session]) -> None:
    job_id = add_job(sessions)
    claim(sessions, job_id)
    for epoch in (1, 2):
        with session_scope(sessions) as session:
            lifecycle.record_checkpoint(
                session, job_id=job_id, name="last", uri=f"u{epoch}", epoch=epoch, size_bytes=10
            )
    with session_scope(sessions) as session:
        assert lifecycle.finish_job(
            session, job_id=job_id, worker="w1", status=JobStatus.succeeded, result={"status": "succeeded"}
        )
    with session_scope(sessions) as session:
        assert not lifecycle.finish_job(session, job_id=job_id, worker="w1", status=JobStatus.failed)
        checkpoint = session.get(Checkpoint, (job_id, "last"))
        assert checkpoint is not None and (checkpoint.uri, checkpoint.epoch) == ("u2", 2)
    job = load(sessions, job_id)
    assert job.status == JobStatus.succeeded and job.finished_at is not None


def test_cancel_request_is_seen(sessions: sessionmaker[Session]) -> None:
    job_id = add_job(sessions, cancel_requested=True)
    with sessions() as session:
        assert lifecycle.is_cancel_requested(session, job_id=job_id)
        assert lifecycle.is_cancel_requested(session, job_id="deleted-job")


def test_requeue_stale_then_fail_after_max_attempts(sessions: sessionmaker[Session]) -> None:
    job_id = add_job(sessions)
    fresh_id = add_job(sessions)
    claim(sessions, job_id)
    claim(sessions, fresh_id)
    later = utcnow() + timedelta(seconds=10)
    with session_scope(sessions) as session:
        lifecycle.heartbeat(session, job_id=fresh_id, worker="w1")
        earlier = later - timedelta(seconds=6)
        outcome = lifecycle.requeue_stale(session, timeout=5, max_attempts=2, now=earlier)
    assert outcome.republish == [] and outcome.failed == []
    with session_scope(sessions) as session:
        outcome = lifecycle.requeue_stale(session, timeout=5, max_attempts=2, now=later)
    assert sorted(outcome.republish) == sorted([(job_id, "auto"), (fresh_id, "auto")])
    job = load(sessions, job_id)
    assert (job.status, job.worker) == (JobStatus.queued, None)
    with session_scope(sessions) as session:  # the old worker lost the job: its writes are refused
        assert not lifecycle.heartbeat(session, job_id=job_id, worker="w1")
    claim(sessions, job_id, "w2")
    with session_scope(sessions) as session:
        outcome = lifecycle.requeue_stale(session, timeout=5, max_attempts=2, now=utcnow() + timedelta(60))
    assert job_id in outcome.failed
    job = load(sessions, job_id)
    assert job.status == JobStatus.failed and job.error is not None and "lost 2 times" in job.error


def test_hand_backs_do_not_count_toward_max_attempts(sessions: sessionmaker[Session]) -> None:
    job_id = add_job(sessions)
    for _ in range(3):  # three graceful worker restarts (SIGTERM) while the job ran
        assert claim(sessions, job_id)
        with session_scope(sessions) as session:
            assert lifecycle.hand_back(session, job_id=job_id, worker="w1")
    assert load(sessions, job_id).attempts == 0
    claim(sessions, job_id)  # then one worker is lost: re-queued, not failed
    with session_scope(sessions) as session:
        outcome = lifecycle.requeue_stale(session, timeout=5, max_attempts=2, now=utcnow() + timedelta(60))
    assert outcome.republish == [(job_id, "auto")] and outcome.failed == []
    claim(sessions, job_id)  # lost a second time: max_attempts=2 losses fail it, saying why
    with session_scope(sessions) as session:
        outcome = lifecycle.requeue_stale(session, timeout=5, max_attempts=2, now=utcnow() + timedelta(60))
    assert outcome.failed == [job_id]
    job = load(sessions, job_id)
    assert job.status == JobStatus.failed and job.error is not None and job.error.startswith("lost 2 times")


def test_republish_lost_stamps_queued_jobs(sessions: sessionmaker[Session]) -> None:
    old_id = add_job(sessions, queued_at=utcnow() - timedelta(seconds=300))
    new_id = add_job(sessions)
    with session_scope(sessions) as session:
        outcome = lifecycle.republish_lost(session, older_than=60)
    assert outcome.republish == [(old_id, "auto")]
    with session_scope(sessions) as session:  # stamped: not again at the next sweep
        assert lifecycle.republish_lost(session, older_than=60).republish == []
    assert load(sessions, new_id).status == JobStatus.queued


def test_worker_beat_upsert(sessions: sessionmaker[Session]) -> None:
    for job in (None, "j1"):
        with session_scope(sessions) as session:
            lifecycle.record_worker_beat(
                session, name="cpu-1@h", device="cpu", queues="cpu", current_job_id=job
            )
    with sessions() as session:
        assert session.scalar(select(func.count()).select_from(WorkerBeat)) == 1
        beat = session.get(WorkerBeat, "cpu-1@h")
        assert beat is not None and beat.current_job_id == "j1"
