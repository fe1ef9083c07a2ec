"""Records come back in EpochRecord's field order on every backend (JSONB on PostgreSQL sorts keys)."""

from __future__ import annotations

from fastapi import FastAPI
from fastapi.testclient import TestClient

from api.jobs.outputs import served_record, stored_record
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


def test_served_records_follow_the_model_and_hold_only_what_was_measured() -> None:
    record = {"layers": [{"weight_norm": 1, "name": "h"}], "val_loss": 0.1, "epoch": 1, "l2_penalty": 0.2}
    served = served_record(stored_record(record))
    assert list(served) == ["epoch", "val_loss", "l2_penalty", "layers"]
    assert list(served["layers"][0]) == ["name", "weight_norm"]
    assert list(served_record(stored_record(record, ["val_loss"]))) == ["epoch", "val_loss"]
