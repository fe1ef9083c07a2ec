"""A job's whole life through the HTTP API and a real worker process, on each backend."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from tests.e2e.conftest import Service
from tests.e2e.harness import (
    DIVERGING_SPEC,
    IRIS_SPEC,
    SLOW_SPEC,
    job_status,
    submit,
    wait_for,
    wait_for_status,
)

pytestmark = pytest.mark.slow


def test_job_runs_and_its_checkpoint_predicts(service: Service, tmp_path: Path) -> None:
    client, headers = service.client, service.headers
    job_id = submit(client, headers, IRIS_SPEC, name="iris")
    job = wait_for_status(client, headers, job_id, {"succeeded", "failed", "cancelled"}, timeout=60)
    assert job["status"] == "succeeded", job
    assert job["attempts"] == 1 and job["worker"] and job["device"] == "cpu"
    assert job["progress"]["epoch"] == 5
    assert job["result"]["epochs_run"] == 5 and job["result"]["test"]

    metrics = client.get(f"/v1/jobs/{job_id}/metrics", headers=headers).json()["items"]
    assert [record["epoch"] for record in metrics] == [1, 2, 3, 4, 5]
    assert all(record["layers"] for record in metrics), "per-layer diagnostics travel with each epoch"

    names = {item["name"] for item in client.get(f"/v1/jobs/{job_id}/checkpoints", headers=headers).json()}
    assert {"best", "last"} <= names
    download = client.get(f"/v1/jobs/{job_id}/checkpoints/best", headers=headers)
    assert download.status_code == 200
    path = tmp_path / "best.safetensors"
    path.write_bytes(download.content)

    import numpy as np

    import training

    flower = [[5.1, 3.5, 1.4, 0.2]]  # a setosa
    local = training.load_model(path).predict(np.array(flower, dtype=np.float32))
    remote = client.post(f"/v1/jobs/{job_id}/predict", json={"inputs": flower}, headers=headers)
    assert remote.status_code == 200, remote.text
    assert remote.json()["classes"] == local["classes"] and len(local["classes"]) == 1


def test_cancel_stops_a_running_job_quickly(service: Service) -> None:
    client, headers = service.client, service.headers
    job_id = submit(client, headers, SLOW_SPEC)
    wait_for_status(client, headers, job_id, {"running"}, timeout=30)
    wait_for(lambda: job_status(client, headers, job_id)["progress"]["epoch"] >= 1, 30, "no epoch finished")
    asked = time.monotonic()
    assert client.post(f"/v1/jobs/{job_id}/cancel", headers=headers).status_code in {200, 202}
    job = wait_for_status(client, headers, job_id, {"cancelled", "succeeded", "failed"}, timeout=10)
    took = time.monotonic() - asked
    assert job["status"] == "cancelled", job
    assert took < 2.5, f"cancel took {took:.2f} s"


def test_failing_job_is_explained_and_the_worker_goes_on(service: Service) -> None:
    client, headers = service.client, service.headers
    bad_id = submit(client, headers, DIVERGING_SPEC)
    next_id = submit(client, headers, IRIS_SPEC)
    bad = wait_for_status(client, headers, bad_id, {"succeeded", "failed", "cancelled"}, timeout=60)
    assert bad["status"] == "failed"
    assert "learning_rate" in bad["error"], bad["error"]  # says what to change
    good = wait_for_status(client, headers, next_id, {"succeeded", "failed", "cancelled"}, timeout=60)
    assert good["status"] == "succeeded", good


def test_uploaded_dataset_is_fetched_by_the_worker(service: Service) -> None:
    client, headers = service.client, service.headers
    points = [f"{i % 7 / 7:.3f},{(i * 3) % 11 / 11:.3f},{'yes' if i % 2 else 'no'}" for i in range(120)]
    rows = ["x1,x2,label", *points]
    upload = client.post(
        "/v1/datasets",
        files={"file": ("points.csv", "\n".join(rows).encode(), "text/csv")},
        data={"target": "label"},
        headers=headers,
    )
    assert upload.status_code == 201, upload.text
    spec = {**IRIS_SPEC, "dataset": {"id": upload.json()["id"], "validation_fraction": 0.25}}
    job_id = submit(client, headers, spec)
    job = wait_for_status(client, headers, job_id, {"succeeded", "failed", "cancelled"}, timeout=60)
    assert job["status"] == "succeeded", job
    assert job["spec"]["dataset"]["id"] == upload.json()["id"], "the stored spec keeps the dataset id"


EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "specs"


@pytest.mark.parametrize(
    ("example", "inputs"),
    [
        # the API takes each example as one row, flattened row-major: 50 time steps x (value, marker)
        ("lstm-adding.json", [[0.5, 1.0, *[0.1, 0.0] * 48, 0.25, 1.0]]),
        ("cnn-digits.json", [[0.0] * 64]),  # an image of 8 x 8 pixels
    ],
)
def test_recurrent_and_convolutional_examples_run_through_the_service_unchanged(
    service: Service, example: str, inputs: list
) -> None:
    import json

    spec = json.loads((EXAMPLES / example).read_text())
    spec["training"]["epochs"] = 2  # the example as shipped, only shorter
    client, headers = service.client, service.headers
    job_id = submit(client, headers, spec, name=example)
    job = wait_for_status(client, headers, job_id, {"succeeded", "failed", "cancelled"}, timeout=120)
    assert job["status"] == "succeeded", job
    names = [
        layer["name"]
        for layer in client.get(f"/v1/jobs/{job_id}/metrics", headers=headers).json()["items"][-1]["layers"]
    ]
    assert names[0] == ("rnn1.input" if example.startswith("lstm") else "conv1") and names[-1] == "output"
    prediction = client.post(f"/v1/jobs/{job_id}/predict", json={"inputs": inputs}, headers=headers)
    assert prediction.status_code == 200, prediction.text
    assert len(prediction.json().get("values") or prediction.json()["classes"]) == 1


def test_benchmarks_use_the_workers_dataset_cache_and_mirror(service: Service) -> None:
    client, headers, settings = service.client, service.headers, service.settings
    generated = {
        "dataset": {"name": "mnist1d", "samples": 200, "as_sequence": True},
        "network": {"type": "rnn", "cell": "gru", "hidden_size": 4, "readout": "mean"},
        "training": {"epochs": 2, "batch_size": 32},
    }
    downloaded = {"dataset": {"name": "mnist"}, "network": {"hidden_layers": [8]}, "training": {"epochs": 1}}
    ok_id, missing_id = submit(client, headers, generated), submit(client, headers, downloaded)
    done = {"succeeded", "failed", "cancelled"}
    ok = wait_for_status(client, headers, ok_id, done, timeout=120)
    assert ok["status"] == "succeeded", ok
    assert (settings.resolved_dataset_cache / "mnist1d" / "mnist1d-200-seed42.npz").is_file()
    missing = wait_for_status(client, headers, missing_id, done, timeout=120)
    assert missing["status"] == "failed"
    folder = str(settings.resolved_dataset_cache.resolve() / "mnist")
    assert (
        folder in missing["error"]
        and f"TRAINCTL_DATASET_MIRROR (now {settings.dataset_mirror})" in missing["error"]
    )
