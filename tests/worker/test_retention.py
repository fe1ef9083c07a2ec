"""A job that checkpoints every epoch keeps best, last and only the newest K periodic checkpoints."""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import select

from core.broker import make_celery
from core.config import Settings
from core.models import Checkpoint
from training.spec import EXAMPLE_SPEC
from worker.context import WorkerContext, WorkerIdentity
from worker.runner import run_job


def test_only_the_newest_periodic_checkpoints_are_kept(
    app: FastAPI, client: TestClient, auth_headers: dict[str, str], settings: Settings
) -> None:
    settings = settings.model_copy(update={"keep_checkpoints": 2})
    spec = {
        **EXAMPLE_SPEC,
        "network": {"hidden_layers": [4]},
        "generalization": {},
        "training": {"epochs": 6, "batch_size": 64, "checkpoint_every": 1, "device": "cpu"},
    }
    job_id = client.post("/v1/jobs", json={"spec": spec}, headers=auth_headers).json()["id"]
    context = WorkerContext(settings, WorkerIdentity("cpu-0@test", "cpu", "cpu"), make_celery(settings))
    try:
        assert run_job(context, job_id) == "succeeded"
    finally:
        context.engine.dispose()

    kept = {"best", "last", "epoch-00005", "epoch-00006"}
    with app.state.session_factory() as session:
        rows = session.scalars(select(Checkpoint).where(Checkpoint.job_id == job_id)).all()
    assert {row.name for row in rows} == kept
    stored = Path(settings.resolved_artifacts_url) / "jobs" / job_id  # under the attempt's own folder
    assert {path.stem for path in stored.rglob("*.safetensors")} == kept
