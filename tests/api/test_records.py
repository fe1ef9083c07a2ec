"""Records keep the training loop's key order on every backend (JSONB on PostgreSQL sorts keys)."""

from __future__ import annotations

from fastapi import FastAPI
from fastapi.testclient import TestClient

from api.jobs.records import ordered_record
from tests.api.runs import finish_run
from training.spec import EXAMPLE_SPEC


def test_metrics_come_back_in_the_loop_order(
    app: FastAPI, client: TestClient, auth_headers: dict[str, str]
) -> None:
    job_id = client.post("/v1/jobs", json={"spec": EXAMPLE_SPEC}, headers=auth_headers).json()["id"]
    finish_run(app, job_id, [1.0, 0.5])
    record = client.get(f"/v1/jobs/{job_id}/metrics", headers=auth_headers).json()["items"][0]
    assert list(record)[:5] == ["epoch", "train_loss", "train_accuracy", "val_loss", "val_accuracy"]
    assert list(record)[-1] == "layers" and list(record["layers"][0])[:2] == ["name", "grad_norm"]
    header = client.get(f"/v1/jobs/{job_id}/metrics?format=csv", headers=auth_headers).text.splitlines()[0]
    assert header.startswith("epoch,train_loss,train_accuracy,val_loss,val_accuracy,learning_rate")


def test_unknown_keys_follow_the_known_ones() -> None:
    record = {"zeta": 1, "layers": [{"weight_norm": 1, "name": "h"}], "val_loss": 0.1, "epoch": 1, "alpha": 2}
    assert list(ordered_record(record)) == ["epoch", "val_loss", "alpha", "zeta", "layers"]
    assert list(ordered_record(record)["layers"][0]) == ["name", "weight_norm"]
