"""Worker-side job lifecycle on real SQLite and PostgreSQL: conditional claim, fenced and idempotent
writes, the reaper's re-queue, and what `succeeded` requires."""

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


def claim(sessions: sessionmaker[Session], job_id: str, worker: str = "w1") -> str:
    with sessions() as session:
        attempt = lifecycle.claim_job(session, job_id=job_id, worker=worker, device="cpu")
    assert attempt is not None
    return attempt


def try_claim(sessions: sessionmaker[Session], job_id: str, worker: str = "w2") -> str | None:
    with sessions() as session:
        return lifecycle.claim_job(session, job_id=job_id, worker=worker, device="cpu")


def test_claim_is_conditional(sessions: sessionmaker[Session]) -> None:
    job_id = add_job(sessions)
    attempt = claim(sessions, job_id, "w1")
    assert try_claim(sessions, job_id, "w2") is None, "a duplicate delivery must not claim the job again"
    job = load(sessions, job_id)
    assert (job.status, job.worker, job.attempts, job.attempt) == (JobStatus.running, "w1", 1, attempt)
    assert job.started_at is not None and job.heartbeat_at is not None


def test_record_epoch_is_idempotent_and_owned(sessions: sessionmaker[Session]) -> None:
    job_id = add_job(sessions)
    attempt = claim(sessions, job_id)
    for loss in (0.9, 0.8):  # the same epoch twice (a resumed run re-records it)
        with session_scope(sessions) as session:
            record = {"epoch": 1, "train_loss": loss, "seconds": 0.5}
            assert lifecycle.record_epoch(session, job_id=job_id, attempt=attempt, record=record)
    with session_scope(sessions) as session:
        assert not lifecycle.record_epoch(session, job_id=job_id, attempt="other", record={"epoch": 2})
    with sessions() as session:
        rows = session.scalars(select(EpochMetric).where(EpochMetric.job_id == job_id)).all()
    assert [(row.epoch, row.record["train_loss"]) for row in rows] == [(1, 0.8)]
    job = load(sessions, job_id)
    assert job.epoch == 1 and job.epoch_seconds == pytest.approx(0.5)


def test_checkpoint_upsert_and_finish(sessions: sessionmaker[Session]) -> None:
    job_id = add_job(sessions)
    attempt = claim(sessions, job_id)
    for epoch in (1, 2):
        with sessions() as session:
            assert lifecycle.record_epoch(session, job_id=job_id, attempt=attempt, record={"epoch": epoch})
            assert lifecycle.record_checkpoint(
                session,
                job_id=job_id,
                attempt=attempt,
                name="last",
                uri=f"u{epoch}",
                epoch=epoch,
                size_bytes=10,
            )
    result = {"status": "succeeded", "epochs_run": 2}
    with sessions() as session:
        assert lifecycle.finish_job(
            session, job_id=job_id, attempt=attempt, status=JobStatus.succeeded, result=result
        )
    with sessions() as session:
        assert not lifecycle.finish_job(session, job_id=job_id, attempt=attempt, status=JobStatus.failed)
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
    attempt = claim(sessions, job_id)
    fresh_attempt = claim(sessions, fresh_id)
    later = utcnow() + timedelta(seconds=10)
    with session_scope(sessions) as session:
        lifecycle.heartbeat(session, job_id=fresh_id, attempt=fresh_attempt)
        earlier = later - timedelta(seconds=6)
        outcome = lifecycle.requeue_stale(session, timeout=5, max_attempts=2, now=earlier)
    assert outcome.republish == [] and outcome.failed == []
    with session_scope(sessions) as session:
        outcome = lifecycle.requeue_stale(session, timeout=5, max_attempts=2, now=later)
    assert sorted(outcome.republish) == sorted([(job_id, "auto"), (fresh_id, "auto")])
    job = load(sessions, job_id)
    assert (job.status, job.worker) == (JobStatus.queued, None)
    with session_scope(sessions) as session:  # the old worker lost the job: its writes are refused
        assert not lifecycle.heartbeat(session, job_id=job_id, attempt=attempt)
    claim(sessions, job_id, "w2")
    with session_scope(sessions) as session:
        outcome = lifecycle.requeue_stale(session, timeout=5, max_attempts=2, now=utcnow() + timedelta(60))
    assert job_id in outcome.failed
    job = load(sessions, job_id)
    assert job.status == JobStatus.failed and job.error is not None and "lost 2 times" in job.error


def test_hand_backs_do_not_count_toward_max_attempts(sessions: sessionmaker[Session]) -> None:
    job_id = add_job(sessions)
    for _ in range(3):  # three graceful worker restarts (SIGTERM) while the job ran
        attempt = claim(sessions, job_id)
        with session_scope(sessions) as session:
            assert lifecycle.hand_back(session, job_id=job_id, attempt=attempt)
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


def test_a_forced_double_claim_leaves_exactly_one_attempts_writes(sessions: sessionmaker[Session]) -> None:
    job_id = add_job(sessions)
    first = claim(sessions, job_id, "w1")
    with sessions() as session:
        assert lifecycle.record_epoch(
            session, job_id=job_id, attempt=first, record={"epoch": 1, "val_loss": 1.0}
        )
        lifecycle.requeue_stale(session, timeout=0, max_attempts=5, now=utcnow() + timedelta(seconds=60))
    second = claim(sessions, job_id, "w2")
    assert second != first
    with sessions() as session:  # the replaced attempt writes, as a slow worker would: all refused
        assert not lifecycle.heartbeat(session, job_id=job_id, attempt=first)
        assert not lifecycle.holds(session, job_id=job_id, attempt=first)
        assert not lifecycle.record_epoch(session, job_id=job_id, attempt=first, record={"epoch": 2})
        assert not lifecycle.record_checkpoint(
            session, job_id=job_id, attempt=first, name="last", uri="first", epoch=2, size_bytes=1
        )
        assert not lifecycle.finish_job(session, job_id=job_id, attempt=first, status=JobStatus.failed)
        assert not lifecycle.hand_back(session, job_id=job_id, attempt=first)
    with sessions() as session:  # the owner's writes land
        for epoch in (1, 2):
            record = {"epoch": epoch, "val_loss": 0.5}
            assert lifecycle.record_epoch(session, job_id=job_id, attempt=second, record=record)
        assert lifecycle.record_checkpoint(
            session, job_id=job_id, attempt=second, name="last", uri="second", epoch=2, size_bytes=1
        )
        result = {"status": "succeeded", "epochs_run": 2}
        assert lifecycle.finish_job(
            session, job_id=job_id, attempt=second, status=JobStatus.succeeded, result=result
        )
    with sessions() as session:
        rows = session.execute(
            select(EpochMetric.epoch, EpochMetric.record).where(EpochMetric.job_id == job_id)
        )
        assert {epoch: record["val_loss"] for epoch, record in rows} == {1: 0.5, 2: 0.5}
        checkpoint = session.get(Checkpoint, (job_id, "last"))
        assert checkpoint is not None and checkpoint.uri == "second"
    job = load(sessions, job_id)
    assert (job.status, job.worker, job.attempt, job.attempts) == (JobStatus.succeeded, "w2", second, 2)


def test_succeeded_needs_a_result_and_every_epoch_recorded(sessions: sessionmaker[Session]) -> None:
    outcomes = {}
    for case, (stored, result) in {
        "no result": ([1, 2], None),
        "epoch 3 missing": ([1, 2], {"status": "succeeded", "epochs_run": 3}),
        "nothing left to do, all there": ([1, 2, 3], {"status": "succeeded", "epochs_run": 3}),
    }.items():
        job_id = add_job(sessions)
        attempt = claim(sessions, job_id)
        with sessions() as session:
            for epoch in stored:
                lifecycle.record_epoch(session, job_id=job_id, attempt=attempt, record={"epoch": epoch})
            assert lifecycle.finish_job(
                session, job_id=job_id, attempt=attempt, status=JobStatus.succeeded, result=result
            )
        outcomes[case] = load(sessions, job_id)
    assert outcomes["no result"].status == JobStatus.failed
    assert "without a result" in (outcomes["no result"].error or "")
    missing = outcomes["epoch 3 missing"]
    assert missing.status == JobStatus.failed and "1 have no stored record (3)" in (missing.error or "")
    assert outcomes["nothing left to do, all there"].status == JobStatus.succeeded
