"""Fixtures of the API tests: a second owner, and rows a worker would have written (test data, not mocks)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from fastapi import FastAPI
from sqlalchemy import func, select

from api.auth.service import create_key
from core.db import utcnow
from core.models import Checkpoint, EpochMetric, Job
from training.spec import EXAMPLE_SPEC

PROBLEM = "application/problem+json"


@pytest.fixture
def other_headers(app: FastAPI) -> dict[str, str]:
    """Authorization header for a second owner, 'bob'."""
    with app.state.session_factory() as session:
        _key, secret = create_key(session, owner="bob")
    return {"Authorization": f"Bearer {secret}"}


@pytest.fixture
def count_rows(app: FastAPI) -> Callable[[type], int]:
    """Rows in a table, to prove that a refused request stored nothing."""

    def count(model: type) -> int:
        with app.state.session_factory() as session:
            return int(session.scalar(select(func.count()).select_from(model)) or 0)

    return count


def epoch_record(epoch: int) -> dict[str, Any]:
    """A metrics record shaped like the training loop's."""
    return {
        "epoch": epoch,
        "train_loss": 1.0 / epoch,
        "val_loss": 1.2 / epoch,
        "val_accuracy": 0.5 + epoch / 100,
        "lr": 0.01,
        "layers": [
            {"name": "hidden0", "grad_norm": 0.1 * epoch, "saturation": 0.0},
            {"name": "output", "grad_norm": 0.2 * epoch, "saturation": 0.1},
        ],
    }


@pytest.fixture
def submit(client: Any, auth_headers: dict[str, str]) -> Callable[..., dict[str, Any]]:
    """Submit the example job (optionally with overrides) as 'alice' and return the response body."""

    def submit_job(headers: dict[str, str] | None = None, **body: Any) -> dict[str, Any]:
        response = client.post(
            "/v1/jobs", json={"spec": EXAMPLE_SPEC, **body}, headers=headers or auth_headers
        )
        assert response.status_code == 202, response.text
        return dict(response.json())

    return submit_job


@pytest.fixture
def finish_job(app: FastAPI) -> Callable[..., None]:
    """Mark a job as a worker would have left it: metrics rows, a checkpoint file and row, a result."""

    def finish(
        job_id: str, *, status: str = "succeeded", epochs: int = 3, checkpoint: bytes | None = b"w"
    ) -> None:
        with app.state.session_factory() as session:
            job = session.get(Job, job_id)
            assert job is not None
            job.status = status
            job.epoch = epochs
            job.started_at = job.finished_at = utcnow()
            job.worker, job.device, job.attempts = "cpu-0@test", "cpu", 1
            job.result = {
                "status": status,
                "epochs_run": epochs,
                "stopped_early": False,
                "best_epoch": epochs,
                "best": {"epoch": epochs, "val_loss": 0.4},
                "final": {"epoch": epochs, "val_loss": 0.4},
                "test": {"accuracy": 0.9},
            }
            for epoch in range(1, epochs + 1):
                session.add(EpochMetric(job_id=job_id, epoch=epoch, record=epoch_record(epoch)))
            if checkpoint is not None:
                key = f"jobs/{job_id}/checkpoints/best.safetensors"
                app.state.artifacts.put_bytes(checkpoint, key)
                session.add(
                    Checkpoint(job_id=job_id, name="best", uri=key, epoch=epochs, size_bytes=len(checkpoint))
                )
            session.commit()

    return finish
