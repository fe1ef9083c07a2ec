"""The curve store: compare answers exactly the same from it as from the epoch rows, on SQLite and
PostgreSQL alike, and its curves are the numbers of the jobs' epoch records."""

from __future__ import annotations

import copy
import math
import os
import tempfile
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import delete, select
from sqlalchemy.orm import Session, sessionmaker

from api.compare.service import compare_jobs
from core import lifecycle
from core.curves import curve_arrays, finite_number, pack_values, unpack_values
from core.db import make_engine, make_session_factory, scratch_database, utcnow
from core.migrate import upgrade_database
from core.models import EpochMetric, Job, JobCurve, JobCurveField, JobStatus
from training.spec import EXAMPLE_SPEC

OWNER = "alice"
FIELDS = ["train_loss", "val_loss", "val_accuracy", "grad_norm", "absent"]
QUERIES: list[dict[str, Any]] = [
    {},
    {"fields": FIELDS, "target": "val_loss<0.5", "job_curves": True},
    {"metric": "val_accuracy", "fields": ["val_accuracy", "grad_norm"], "points": 3, "job_curves": True},
]
# Jobs that ended through core.lifecycle (finish_job, the reaper) have curve-store rows.
STORED = {"job_a0", "job_a1", "job_a2", "job_b0", "job_b1", "job_b2", "job_c1"}
IDS = sorted([*STORED, "job_c0", "job_c2"])


def record(epoch: int, loss: float, **odd: Any) -> dict[str, Any]:
    """An epoch record; `odd` overrides fields with missing (...), null, bool, int or text values."""
    values: dict[str, Any] = {
        "epoch": epoch,
        "train_loss": loss * 0.9,
        "val_loss": loss,
        "val_accuracy": 1 - loss / 2,
        "grad_norm": 0.1 * epoch,
        "layers": [{"name": "output", "grad_norm": 0.5}],
    }
    values.update(odd)
    return {key: value for key, value in values.items() if value is not ...}


def result(records: list[dict[str, Any]], *, stopped_early: bool = False) -> dict[str, Any]:
    best = min(records, key=lambda item: item["val_loss"])
    summary = [{k: v for k, v in item.items() if k != "layers"} for item in (best, records[-1])]
    return {
        "status": "succeeded",
        "epochs_run": len(records),
        "stopped_early": stopped_early,
        "best_epoch": best["epoch"],
        "best": summary[0],
        "final": summary[1],
        "test": {"test_loss": best["val_loss"] * 1.1},
        "seconds": 0.5 * len(records),
    }


def build(sessions: sessionmaker[Session]) -> None:
    """Nine jobs in three groups, written the way workers write them (fixed ids: same data everywhere)."""
    with sessions.begin() as session:
        for group, activation in enumerate(("relu", "sigmoid", "tanh")):
            for seed in range(3):
                spec = copy.deepcopy(EXAMPLE_SPEC)
                spec["activation"], spec["training"]["seed"] = activation, seed
                job_id = f"job_{'abc'[group]}{seed}"
                session.add(Job(id=job_id, owner=OWNER, name=job_id, spec=spec, epochs=4, warnings=[]))

    def claim(job_id: str) -> str:
        with sessions() as session:
            attempt = lifecycle.claim_job(session, job_id=job_id, worker="w", device="cpu")
        assert attempt is not None
        return attempt

    def epochs(job_id: str, attempt: str, records: list[dict[str, Any]]) -> None:
        for item in records:
            with sessions() as session:
                assert lifecycle.record_epoch(session, job_id=job_id, attempt=attempt, record=item)

    def finish(job_id: str, attempt: str, status: JobStatus, outcome: dict[str, Any] | None) -> None:
        with sessions() as session:
            assert lifecycle.finish_job(
                session, job_id=job_id, attempt=attempt, status=status, result=outcome
            )

    # relu: a full run, one stopped early, one resumed (epoch 2 recorded again after the resume).
    full = [record(epoch, 1 / epoch) for epoch in range(1, 5)]
    attempt = claim("job_a0")
    epochs("job_a0", attempt, full)
    finish("job_a0", attempt, JobStatus.succeeded, result(full))
    early = [record(1, 0.9), record(2, 0.45, val_accuracy=None)]
    attempt = claim("job_a1")
    epochs("job_a1", attempt, early)
    finish("job_a1", attempt, JobStatus.succeeded, result(early, stopped_early=True))
    first = claim("job_a2")
    epochs("job_a2", first, [record(1, 0.8), record(2, 0.7)])
    with sessions() as session:
        assert lifecycle.hand_back(session, job_id="job_a2", attempt=first)
    second = claim("job_a2")
    resumed = [record(1, 0.8), record(2, 0.65, grad_norm=None), record(3, 0.4), record(4, 0.35)]
    epochs("job_a2", second, resumed[1:])
    with sessions() as session:  # the replaced attempt's late write is fenced off
        assert not lifecycle.record_epoch(session, job_id="job_a2", attempt=first, record=record(5, 0.1))
    finish("job_a2", second, JobStatus.succeeded, result(resumed))

    # sigmoid: a replica group, one member failing after its third epoch; odd values in the records.
    attempts = {job_id: claim(job_id) for job_id in ("job_b0", "job_b1", "job_b2")}
    odd: dict[tuple[str, int], dict[str, Any]] = {
        ("job_b0", 2): {"val_accuracy": ...},
        ("job_b1", 3): {"grad_norm": True, "train_loss": 1},
        ("job_b2", 1): {"val_accuracy": None, "grad_norm": "n/a"},
    }
    runs: dict[str, list[dict[str, Any]]] = {job_id: [] for job_id in attempts}
    for epoch in range(1, 5):
        rows = []
        for index, (job_id, attempt) in enumerate(attempts.items()):
            if job_id == "job_b2" and epoch == 4:
                continue
            item = record(epoch, 1.2 / epoch + 0.01 * index, **odd.get((job_id, epoch), {}))
            runs[job_id].append(item)
            rows.append((job_id, attempt, item))
        with sessions() as session:
            assert lifecycle.record_group_epoch(session, records=rows, checkpoints=[]) == []
        if epoch == 3:
            finish("job_b2", attempts["job_b2"], JobStatus.failed, None)
    for job_id in ("job_b0", "job_b1"):
        finish(job_id, attempts[job_id], JobStatus.succeeded, result(runs[job_id]))
    with sessions() as session:  # a finished member's attempt writes nothing more
        late = [("job_b1", attempts["job_b1"], record(5, 0.1))]
        assert lifecycle.record_group_epoch(session, records=late, checkpoints=[]) == ["job_b1"]

    # tanh: one still running, one failed by the reaper, one finished outside core.lifecycle.
    attempt = claim("job_c1")
    epochs("job_c1", attempt, [record(1, 0.95)])
    with sessions() as session:
        later = utcnow() + timedelta(hours=1)
        assert lifecycle.requeue_stale(session, timeout=60, max_attempts=1, now=later).failed == ["job_c1"]
    attempt = claim("job_c0")
    epochs("job_c0", attempt, [record(1, 0.9), record(2, 0.6)])
    with sessions.begin() as session:
        outside = [record(1, 0.7), record(2, 0.5)]
        session.add_all(EpochMetric(job_id="job_c2", epoch=item["epoch"], record=item) for item in outside)
        job = session.get(Job, "job_c2")
        assert job is not None
        job.status, job.result, job.epoch = JobStatus.succeeded, result(outside), 2


def answers(sessions: sessionmaker[Session]) -> list[str]:
    """The JSON of every query in QUERIES."""
    with sessions() as session:
        return [
            compare_jobs(session, owner=OWNER, job_ids=IDS, **query).model_dump_json() for query in QUERIES
        ]


@pytest.fixture
def sessions(database_url: str) -> Any:
    engine = make_engine(database_url)
    factory = make_session_factory(engine)
    build(factory)
    yield factory
    engine.dispose()


def test_store_holds_the_epoch_records_numbers(sessions: sessionmaker[Session]) -> None:
    with sessions() as session:
        assert set(session.scalars(select(JobCurve.job_id))) == STORED
        rows = session.execute(select(EpochMetric.job_id, EpochMetric.epoch, EpochMetric.record)).all()
        comparison = compare_jobs(session, owner=OWNER, job_ids=IDS, fields=FIELDS, job_curves=True)
    expected: dict[str, dict[str, list[tuple[int, float]]]] = {
        job_id: {field: [] for field in FIELDS} for job_id in IDS
    }
    for job_id, epoch, item in sorted(rows, key=lambda row: (row[0], row[1])):
        for field in FIELDS:
            value = finite_number(item.get(field))
            if value is not None:
                expected[job_id][field].append((epoch, value))
    assert comparison.curves == expected
    assert [point[0] for point in expected["job_a2"]["val_loss"]] == [1, 2, 3, 4]
    assert expected["job_a2"]["val_loss"][1] == (2, 0.65), "the resumed attempt's epoch 2"
    assert [point[0] for point in expected["job_b1"]["grad_norm"]] == [1, 2, 4], "true is not a number"
    by_key = {group.key["activation"]: group for group in comparison.groups}
    assert by_key["sigmoid"].excluded == {"failed": 1} and by_key["tanh"].excluded == {
        "running": 1,
        "failed": 1,
    }


def test_store_answers_exactly_as_the_epoch_rows(sessions: sessionmaker[Session]) -> None:
    stored = answers(sessions)
    with sessions.begin() as session:
        session.execute(delete(JobCurveField))
        session.execute(delete(JobCurve))
    assert answers(sessions) == stored


def test_sqlite_and_postgresql_answer_the_same() -> None:
    server = os.environ.get("TRAINCTL_TEST_DATABASE_URL")
    if not server:
        pytest.skip("needs TRAINCTL_TEST_DATABASE_URL")
    results = []
    with tempfile.TemporaryDirectory() as folder, scratch_database(server, "trainctl_test") as postgres:
        for url in (f"sqlite:///{folder}/compare.db", postgres):
            upgrade_database(url)
            engine = make_engine(url)
            factory = make_session_factory(engine)
            build(factory)
            results.append(answers(factory))
            engine.dispose()
    assert results[0] == results[1]


def test_arrays_keep_finite_numbers_only() -> None:
    records = [(1, {"a": 1, "b": True}), (2, {"a": math.nan, "c": 2.5}), (3, {"a": -math.inf, "c": 10**400})]
    epochs, series = curve_arrays(records)
    assert epochs == [1, 2, 3] and series == {"a": [1.0, None, None], "c": [None, 2.5, None]}
    values = [0.1, None, -0.0, 1e308, 5e-324]
    assert unpack_values(pack_values(values)) == values
