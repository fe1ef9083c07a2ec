"""TRAINCTL_CHECKPOINT_SECONDS reaches a job trained alone and a replica group: the worker in this process
against a real database, its checkpoint announcements (uploads and promotions) counted as they pass."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import select

from core.broker import make_celery
from core.config import Settings
from core.db import session_scope
from core.models import Checkpoint, Job
from training.callbacks import CheckpointInfo
from worker.context import WorkerContext, WorkerIdentity
from worker.group_report import GroupMember
from worker.groups import run_group
from worker.runner import ServiceCallback

SPEC: dict[str, Any] = {
    "dataset": {"name": "moons", "samples": 200},
    "network": {"type": "mlp", "hidden_layers": [8]},
    "training": {"epochs": 4, "batch_size": 32},
}


@pytest.fixture
def context(settings: Settings) -> Iterator[WorkerContext]:
    celery_app = make_celery(settings)
    context = WorkerContext(
        settings, WorkerIdentity(f"test:{uuid.uuid4().hex[:6]}", "cpu", "cpu"), celery_app
    )
    yield context
    context.engine.dispose()
    celery_app.close()


@pytest.fixture
def announced(monkeypatch: pytest.MonkeyPatch) -> dict[str, list[tuple[str, int]]]:
    """Each job's checkpoint announcements (name, epoch), in order, for jobs alone and group members."""
    seen: dict[str, list[tuple[str, int]]] = {}
    for cls in (ServiceCallback, GroupMember):
        original = cls.on_checkpoint

        def spy(self: ServiceCallback, info: CheckpointInfo, original=original) -> None:
            seen.setdefault(self.job_id, []).append((info.name, info.epoch))
            original(self, info)

        monkeypatch.setattr(cls, "on_checkpoint", spy)
    return seen


def add_jobs(context: WorkerContext, seeds: int) -> list[str]:
    """Queued jobs of SPEC with seeds 0..seeds-1, one replica group when there are several."""
    group = f"grp_{uuid.uuid4().hex[:8]}" if seeds > 1 else None
    ids = [f"job_{uuid.uuid4().hex[:16]}" for _ in range(seeds)]
    with session_scope(context.sessions) as session:
        for seed, job_id in enumerate(ids):
            spec = {**SPEC, "training": {**SPEC["training"], "seed": seed}}
            session.add(Job(id=job_id, owner="alice", spec=spec, epochs=4, replica_group=group))
    return ids


@pytest.mark.parametrize("seeds", [1, 2], ids=["alone", "group"])
def test_the_worker_writes_best_and_last_at_its_cadence(
    context: WorkerContext, announced: dict[str, list[tuple[str, int]]], seeds: int
) -> None:
    for seconds in (0.0, 3600.0):
        context.settings.checkpoint_seconds = seconds
        ids = add_jobs(context, seeds)
        assert run_group(context, ids) == ["succeeded"] * seeds
        with session_scope(context.sessions) as session:
            for job_id in ids:
                best_epoch = session.get_one(Job, job_id).result["best_epoch"]  # type: ignore[index]
                rows = session.scalars(select(Checkpoint).where(Checkpoint.job_id == job_id))
                assert {(row.name, row.epoch) for row in rows} == {("best", best_epoch), ("last", 4)}
                lasts = [epoch for name, epoch in announced[job_id] if name == "last"]
                assert lasts == ([1, 2, 3, 4] if seconds == 0 else [4]), (seconds, announced[job_id])
