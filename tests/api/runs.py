"""Rows a worker would have written for a finished run, shaped like the training loop's (test data)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from fastapi import FastAPI

from core.curves import store_curves
from core.db import utcnow
from core.models import EpochMetric, Job

LAYERS = ("hidden1", "hidden2", "output")


def record(epoch: int, val_loss: float, *, activation: str = "relu") -> dict[str, Any]:
    """One epoch: losses, accuracy, and per-layer diagnostics whose gradients shrink toward the input."""
    layers = []
    for depth, name in enumerate(LAYERS):
        hidden = name != "output"
        layers.append(
            {
                "name": name,
                "grad_norm": 10.0 ** (depth - 3) / epoch,
                "weight_norm": 1.0 + depth,
                "update_ratio": 0.01,
                "activation_mean": 0.1,
                "activation_std": 0.5,
                "saturated_fraction": 0.1 * (depth + 1)
                if hidden and activation in ("sigmoid", "tanh")
                else None,
                "dead_fraction": 0.05 * (depth + 1)
                if hidden and activation in ("relu", "leaky_relu")
                else None,
            }
        )
    return {
        "epoch": epoch,
        "train_loss": val_loss * 0.9,
        "val_loss": val_loss,
        "train_accuracy": 1 - val_loss / 2,
        "val_accuracy": 1 - val_loss / 2,
        "learning_rate": 0.01,
        "grad_norm": 1.0,
        "seconds": 0.01,
        "layers": layers,
    }


def finish_run(
    app: FastAPI,
    job_id: str,
    val_losses: Sequence[float],
    *,
    test_accuracy: float = 0.9,
    status: str = "succeeded",
    seconds: float = 1.5,
) -> dict[str, Any]:
    """Write one record per epoch and a result whose best epoch is the lowest val_loss; returns the result."""
    with app.state.session_factory() as session:
        job = session.get(Job, job_id)
        assert job is not None
        activation = job.spec.get("activation", "relu")
        records = [record(epoch, loss, activation=activation) for epoch, loss in enumerate(val_losses, 1)]
        best = min(records, key=lambda item: item["val_loss"])
        summary = [{k: v for k, v in item.items() if k != "layers"} for item in (best, records[-1])]
        result = {
            "status": status,
            "epochs_run": len(records),
            "stopped_early": False,
            "stop_reason": "completed all epochs",
            "best_epoch": best["epoch"],
            "best": summary[0],
            "final": summary[1],
            "test": {"test_loss": 1 - test_accuracy, "test_accuracy": test_accuracy},
            "parameters": 100,
            "seconds": seconds,
        }
        job.status, job.epoch, job.result = status, len(records), result
        job.started_at = job.finished_at = utcnow()
        session.add_all(EpochMetric(job_id=job_id, epoch=item["epoch"], record=item) for item in records)
        session.flush()
        if status != "running":
            store_curves(session, job_id)  # as core.lifecycle does when a job finishes
        session.commit()
    return result
