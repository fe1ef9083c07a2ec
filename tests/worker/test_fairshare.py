"""Free slots serve owners fairly, under a per-owner cap on running jobs, and jobs end at a time limit."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import select

from api.auth.service import create_key
from core import lifecycle
from core.broker import make_celery
from core.config import Settings
from core.db import engine_for, make_session_factory, session_scope
from core.models import EpochMetric, Job
from training.spec import EXAMPLE_SPEC
from worker.context import WorkerContext, WorkerIdentity
from worker.runner import run_job

TINY = {
    **EXAMPLE_SPEC,
    "network": {"hidden_layers": [4]},
    "generalization": {},
    "training": {"epochs": 1, "batch_size": 64, "device": "cpu"},
}


def headers_of(app: FastAPI, owner: str) -> dict[str, str]:
    with app.state.session_factory() as session:
        _key, secret = create_key(session, owner=owner)
    return {"Authorization": f"Bearer {secret}"}


def submit(client: TestClient, headers: dict[str, str], spec: dict[str, Any] = TINY) -> str:
    response = client.post("/v1/jobs", json={"spec": spec}, headers=headers)
    assert response.status_code == 202, response.text
    return str(response.json()["id"])


@pytest.fixture
def slot(settings: Settings) -> Iterator[WorkerContext]:
    """One worker slot, driven by hand: each run_job call is one delivered message."""
    context = WorkerContext(settings, WorkerIdentity("cpu-0@test", "cpu", "cpu"), make_celery(settings))
    yield context
    context.engine.dispose()


def jobs_by_start(app: FastAPI) -> list[str]:
    with app.state.session_factory() as session:
        return list(
            session.scalars(select(Job.id).where(Job.started_at.is_not(None)).order_by(Job.started_at))
        )


def test_a_second_owners_job_starts_at_the_next_turnover_despite_a_backlog(
    app: FastAPI, client: TestClient, slot: WorkerContext
) -> None:
    alice, bob = headers_of(app, "alice"), headers_of(app, "bob")
    backlog = [submit(client, alice) for _ in range(4)]
    small = submit(client, bob)
    for message in [*backlog, small]:  # the broker delivers in submission order, one at a time
        assert run_job(slot, message) == "succeeded"
    # FIFO would start bob's job fifth; fair share starts it as soon as alice's first job frees the slot.
    assert jobs_by_start(app) == [backlog[0], small, *backlog[1:]]


def test_an_owner_at_the_cap_waits_while_others_start(
    app: FastAPI, client: TestClient, settings: Settings
) -> None:
    context = WorkerContext(
        settings.model_copy(update={"max_running_jobs_per_owner": 1}),
        WorkerIdentity("cpu-1@test", "cpu", "cpu"),
        make_celery(settings),
    )
    alice, bob = headers_of(app, "alice"), headers_of(app, "bob")
    running, waiting = submit(client, alice), submit(client, alice)
    with app.state.session_factory() as session:
        job = session.get(Job, running)
        assert job is not None
        job.status, job.worker = "running", "elsewhere"  # alice's one job at the cap, on another slot
        session.commit()
    try:
        assert run_job(context, waiting) == "skipped"
        later = submit(client, bob)
        assert run_job(context, waiting) == "succeeded"  # alice's message, bob's turn
    finally:
        context.engine.dispose()
    with app.state.session_factory() as session:
        assert {job.id: job.status for job in session.scalars(select(Job))} == {
            running: "running",
            waiting: "queued",
            later: "succeeded",
        }


def test_a_job_past_the_time_limit_fails_naming_the_limit(
    app: FastAPI, client: TestClient, settings: Settings
) -> None:
    context = WorkerContext(
        settings.model_copy(update={"max_job_seconds": 1.0}),
        WorkerIdentity("cpu-2@test", "cpu", "cpu"),
        make_celery(settings),
    )
    long = {**TINY, "training": {"epochs": 10_000, "batch_size": 8, "device": "cpu"}}
    job_id = submit(client, headers_of(app, "alice"), long)
    try:
        assert run_job(context, job_id) == "failed"
    finally:
        context.engine.dispose()
    with app.state.session_factory() as session:
        job = session.get(Job, job_id)
        assert job is not None and job.status == "failed"
        assert "TRAINCTL_MAX_JOB_SECONDS" in (job.error or "") and "1 s" in (job.error or "")
        epochs = list(
            session.scalars(
                select(EpochMetric.epoch).where(EpochMetric.job_id == job_id).order_by(EpochMetric.epoch)
            )
        )
    assert epochs == list(range(1, len(epochs) + 1)) and len(epochs) < 10_000


def test_concurrent_claims_never_take_an_owner_past_the_cap(settings: Settings) -> None:
    """Workers claiming different jobs of one owner at the same instant start at most `cap` of them."""
    engine = engine_for(settings)
    sessions = make_session_factory(engine)
    workers, cap = 6, 2
    try:
        for round_ in range(8):
            ids = [f"job_cap_{round_}_{n}" for n in range(workers)]
            with session_scope(sessions) as session:
                session.add_all(Job(id=job_id, owner="alice", spec=TINY, epochs=1) for job_id in ids)
            barrier = threading.Barrier(workers)

            def claim(job_id: str, barrier: threading.Barrier = barrier) -> None:
                with sessions() as session:
                    barrier.wait()
                    lifecycle.claim_job(
                        session, job_id=job_id, worker="w", device="cpu", max_running_per_owner=cap
                    )

            threads = [threading.Thread(target=claim, args=(job_id,)) for job_id in ids]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join(30)
            with session_scope(sessions) as session:
                running = session.scalars(select(Job).where(Job.status == "running")).all()
                assert len(running) == cap, f"round {round_}: {len(running)} running, cap {cap}"
                for job in running:  # this round's slots finish; the next round starts from zero
                    job.status = "succeeded"  # type: ignore[assignment]
                for job in session.scalars(select(Job).where(Job.status == "queued")):
                    job.status = "cancelled"  # type: ignore[assignment]
    finally:
        engine.dispose()
