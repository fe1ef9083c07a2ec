"""Issue 4, done when: a 2 × 2 grid × 2 seeds sweep runs on a real worker and compares; events stream live."""

from __future__ import annotations

import copy
import csv
import io
import json
import statistics
import time
from datetime import datetime
from typing import Any

import pytest

from tests.e2e.conftest import Service
from tests.e2e.harness import IRIS_SPEC, submit, wait_for

pytestmark = pytest.mark.slow

GRID = {"activation": ["sigmoid", "relu"], "normalization.layers": ["none", "batch"]}


def test_sweep_runs_end_to_end_and_compares(service: Service) -> None:
    client, headers = service.client, service.headers
    base = copy.deepcopy(IRIS_SPEC)
    base["network"]["hidden_layers"] = [8]
    base["training"] |= {"epochs": 3, "seed": 5}
    body = {"name": "e2e-sweep", "base": base, "grid": GRID, "seeds": 2}
    created = client.post("/v1/sweeps", json=body, headers=headers)
    assert created.status_code == 202, created.text
    sweep_id = created.json()["id"]
    assert created.json()["size"] == 8

    def finished() -> dict[str, Any] | None:
        sweep = client.get(f"/v1/sweeps/{sweep_id}", headers=headers).json()
        counts = sweep["counts"]
        return sweep if counts["queued"] == counts["running"] == 0 else None

    sweep = wait_for(finished, 180, lambda: f"sweep never finished:\n{service.worker.output()}")
    assert sweep["counts"]["succeeded"] == 8, sweep
    results = {
        job["id"]: client.get(f"/v1/jobs/{job['id']}", headers=headers).json() for job in sweep["jobs"]
    }
    # the seeds and activations of each normalization trained together, as one replica group
    groups_of = [results[job["id"]]["replica_group"] for job in sweep["jobs"]]
    assert all(groups_of) and len(set(groups_of)) == 2, groups_of

    comparison = client.get(f"/v1/compare?sweep={sweep_id}&target=val_accuracy>=0.5", headers=headers)
    assert comparison.status_code == 200, comparison.text
    result = comparison.json()
    assert result["common"]["dataset.name"] == "iris" and "activation" not in result["common"]
    for job, entry in zip(result["jobs"], sweep["jobs"], strict=True):
        assert job["id"] == entry["id"] and job["differs"] == entry["params"]
        assert job["best"] == results[job["id"]]["result"]["best"] and job["epochs_to_target"] in (
            None,
            1,
            2,
            3,
        )
    groups = result["groups"]
    assert len(groups) == 4 and [group["n"] for group in groups] == [2, 2, 2, 2]
    assert [group["key"] for group in groups] == [
        {"activation": activation, "normalization.layers": layers}
        for activation in GRID["activation"]
        for layers in GRID["normalization.layers"]
    ]
    for group in groups:
        losses = [results[job_id]["result"]["best"]["val_loss"] for job_id in group["job_ids"]]
        accuracies = [results[job_id]["result"]["test"]["test_accuracy"] for job_id in group["job_ids"]]
        assert group["metrics"]["val_loss"]["mean"] == pytest.approx(statistics.fmean(losses))
        assert group["metrics"]["val_loss"]["std"] == pytest.approx(statistics.stdev(losses))
        assert group["metrics"]["test_accuracy"]["mean"] == pytest.approx(statistics.fmean(accuracies))
        assert group["metrics"]["test_accuracy"]["std"] == pytest.approx(statistics.stdev(accuracies))
    means = [group["metrics"]["val_loss"]["mean"] for group in groups]
    assert result["best_group"] == means.index(min(means))
    assert all(band["epochs"] == [1, 2, 3] and band["n"] == [2, 2, 2] for band in result["bands"]["val_loss"])
    assert [test["other"] for test in result["tests"]] == [i for i in range(4) if i != result["best_group"]]
    assert all(test["test"] == "paired" for test in result["tests"]), "same seeds, same split settings"

    table = client.get(f"/v1/compare?sweep={sweep_id}&format=csv", headers=headers)
    rows = list(csv.DictReader(io.StringIO(table.text)))
    assert len(rows) == 8 and {"activation", "normalization.layers", "training.seed"} <= set(rows[0])
    assert {row["training.seed"] for row in rows} == {"5", "6"}
    assert all(
        float(row["best.val_loss"]) == results[row["id"]]["result"]["best"]["val_loss"] for row in rows
    )

    import matplotlib.image

    picture = client.get(f"/v1/compare/plot.png?sweep={sweep_id}&width=700&height=400", headers=headers)
    assert picture.status_code == 200 and picture.headers["content-type"] == "image/png"
    assert matplotlib.image.imread(io.BytesIO(picture.content), format="png").shape[:2] == (400, 700)
    gradients = client.get(f"/v1/jobs/{sweep['jobs'][0]['id']}/plots/gradients.png", headers=headers)
    assert matplotlib.image.imread(io.BytesIO(gradients.content), format="png").shape[:2] == (600, 1000)


def test_events_stream_every_epoch_of_a_running_job_live(service: Service) -> None:
    client, headers = service.client, service.headers
    service.settings.events_poll_interval = 0.2  # the app reads it when its poller starts
    spec = copy.deepcopy(IRIS_SPEC)
    spec["training"] |= {"epochs": 20, "batch_size": 2}  # about a second or two: long enough to watch
    job_id = submit(client, headers, spec)
    received: list[tuple[float, str, Any, str | None]] = []
    with client.stream("GET", f"/v1/jobs/{job_id}/events", headers=headers) as response:
        assert response.status_code == 200
        event: dict[str, Any] = {}
        for line in response.iter_lines():
            if line.startswith(("event: ", "data: ", "id: ")):
                name, _, value = line.partition(": ")
                event[name] = value
            elif not line and "event" in event:
                received.append(
                    (time.monotonic(), event["event"], json.loads(event["data"]), event.get("id"))
                )
                event = {}
    kinds = [kind for _at, kind, _data, _id in received]
    epochs = [data["epoch"] for _at, kind, data, _id in received if kind == "epoch"]
    assert epochs == list(range(1, 21)), kinds
    assert [ident for _at, kind, _data, ident in received if kind == "epoch"] == [
        str(e) for e in range(1, 21)
    ]
    assert kinds[-1] == "end" and received[-1][2]["status"] == "succeeded"
    statuses = [data["status"] for _at, kind, data, _id in received if kind == "status"]
    assert "running" in statuses and statuses[-1] == "succeeded"
    first_epoch_at = next(at for at, kind, _data, _id in received if kind == "epoch")
    finished_at = datetime.fromisoformat(received[-1][2]["finished_at"]).timestamp()
    assert first_epoch_at < finished_at, "the first epoch arrived while the job ran, not after it ended"

    resumed = client.get(f"/v1/jobs/{job_id}/events", headers=headers | {"Last-Event-ID": "18"})
    assert [line for line in resumed.text.splitlines() if line.startswith("id: ")] == ["id: 19", "id: 20"]
