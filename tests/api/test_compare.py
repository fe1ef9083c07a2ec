"""Compare: spec diff, seed groups with mean ± sample std, best group and noise, targets, curves, CSV."""

from __future__ import annotations

import copy
import csv
import io
import statistics
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import event

from api.compare.service import downsample, spec_diff
from tests.api.runs import finish_run
from training.spec import EXAMPLE_SPEC

# Per grid point and seed: val_loss curves, and a test accuracy.
LOSSES = {
    ("sigmoid", 0): [1.0, 0.8, 0.6],
    ("sigmoid", 1): [1.0, 0.7, 0.5],
    ("relu", 0): [0.9, 0.4, 0.2],
    ("relu", 1): [0.9, 0.3, 0.25],
}


def run_sweep(app: FastAPI, client: TestClient, headers: dict[str, str]) -> dict[str, Any]:
    body = {"name": "act", "base": EXAMPLE_SPEC, "grid": {"activation": ["sigmoid", "relu"]}, "seeds": 2}
    sweep = client.post("/v1/sweeps", json=body, headers=headers).json()
    for job in sweep["jobs"]:
        key = (job["params"]["activation"], job["seed"])
        finish_run(
            app, job["id"], LOSSES[key], test_accuracy=0.8 + 0.05 * job["seed"], seconds=1 + job["seed"]
        )
    return sweep


def compare(client: TestClient, headers: dict[str, str], query: str) -> dict[str, Any]:
    response = client.get(f"/v1/compare?{query}", headers=headers)
    assert response.status_code == 200, response.text
    return dict(response.json())


def test_sweep_groups_by_seed_with_mean_and_sample_std(
    app: FastAPI, client: TestClient, auth_headers: dict[str, str]
) -> None:
    sweep = run_sweep(app, client, auth_headers)
    result = compare(client, auth_headers, f"sweep={sweep['id']}&target=val_loss<0.35")
    assert result["metric"] == "val_loss" and result["mode"] == "min" and result["target"] == "val_loss<0.35"
    assert result["common"]["dataset.name"] == "iris" and result["common"]["network.hidden_layers"] == [16]
    assert "activation" not in result["common"] and "training.seed" not in result["common"]
    assert [job["differs"] for job in result["jobs"]] == [
        {"activation": "sigmoid", "training.seed": 0},
        {"activation": "sigmoid", "training.seed": 1},
        {"activation": "relu", "training.seed": 0},
        {"activation": "relu", "training.seed": 1},
    ]
    assert [job["epochs_to_target"] for job in result["jobs"]] == [None, None, 3, 2]
    first = result["jobs"][0]
    assert (
        first["best_epoch"] == 3
        and first["best"]["val_loss"] == 0.6
        and first["test"]["test_accuracy"] == 0.8
    )
    assert first["stopped_early"] is False and first["seconds"] == 1 and first["status"] == "succeeded"

    groups = result["groups"]
    assert [group["key"] for group in groups] == [{"activation": "sigmoid"}, {"activation": "relu"}]
    assert [group["n"] for group in groups] == [2, 2]
    relu = groups[1]["metrics"]
    assert relu["val_loss"]["mean"] == pytest.approx(statistics.fmean([0.2, 0.25]))
    assert relu["val_loss"]["std"] == pytest.approx(statistics.stdev([0.2, 0.25]))  # sample std, n - 1
    assert relu["val_loss"]["n"] == 2
    assert relu["test_accuracy"]["mean"] == pytest.approx(0.825)
    assert relu["seconds"] == {"mean": 1.5, "std": pytest.approx(statistics.stdev([1, 2])), "n": 2}
    assert result["best_group"] == 1 and result["best_within_noise"] is False
    assert relu["epochs_to_target"] == {"mean": 2.5, "std": pytest.approx(statistics.stdev([3, 2])), "n": 2}
    assert groups[0]["metrics"]["epochs_to_target"] == {"mean": None, "std": None, "n": 0}
    assert result["curves"][first["id"]] == {
        "train_loss": [[1, 0.9], [2, pytest.approx(0.72)], [3, pytest.approx(0.54)]],
        "val_loss": [[1, 1.0], [2, 0.8], [3, 0.6]],
    }

    by_accuracy = compare(
        client, auth_headers, f"sweep={sweep['id']}&metric=val_accuracy&fields=val_accuracy"
    )
    assert by_accuracy["mode"] == "max" and by_accuracy["best_group"] == 1
    assert set(by_accuracy["curves"][first["id"]]) == {"val_accuracy"}
    worst = compare(client, auth_headers, f"sweep={sweep['id']}&mode=max")
    assert worst["best_group"] == 0


def test_overlapping_intervals_are_flagged_as_noise(
    app: FastAPI, client: TestClient, auth_headers: dict[str, str]
) -> None:
    ids = []
    for activation, losses in (("relu", [0.30, 0.40]), ("tanh", [0.32, 0.45])):
        for seed, loss in enumerate(losses):
            spec = copy.deepcopy(EXAMPLE_SPEC) | {"activation": activation}
            spec["training"] = spec["training"] | {"seed": seed}
            job = client.post("/v1/jobs", json={"spec": spec}, headers=auth_headers).json()
            finish_run(app, job["id"], [1.0, loss])
            ids.append(job["id"])
    result = compare(client, auth_headers, "jobs=" + ",".join(ids))
    assert [group["n"] for group in result["groups"]] == [2, 2]
    assert result["best_group"] == 0 and result["best_within_noise"] is True
    single = compare(client, auth_headers, f"jobs={ids[0]},{ids[2]}")
    assert [group["n"] for group in single["groups"]] == [1, 1]
    assert single["groups"][0]["metrics"]["val_loss"] == {"mean": 0.3, "std": 0.0, "n": 1}
    assert single["best_within_noise"] is False  # 0.30 ± 0 vs 0.32 ± 0 do not overlap


def test_unfinished_jobs_are_listed_without_results(client: TestClient, auth_headers: dict[str, str]) -> None:
    job = client.post("/v1/jobs", json={"spec": EXAMPLE_SPEC}, headers=auth_headers).json()
    result = compare(client, auth_headers, f"jobs={job['id']}")
    assert result["jobs"][0]["status"] == "queued" and result["jobs"][0]["best"] is None
    assert result["jobs"][0]["differs"] == {} and result["common"]["activation"] == "relu"
    assert result["groups"][0]["metrics"]["val_loss"] == {"mean": None, "std": None, "n": 0}
    assert result["best_group"] is None and result["best_within_noise"] is None
    assert result["curves"] == {job["id"]: {"train_loss": [], "val_loss": []}}


def test_csv_is_one_flat_row_per_job(app: FastAPI, client: TestClient, auth_headers: dict[str, str]) -> None:
    sweep = run_sweep(app, client, auth_headers)
    response = client.get(
        f"/v1/compare?sweep={sweep['id']}&format=csv&target=val_loss<0.35", headers=auth_headers
    )
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(response.text)))
    assert [row["id"] for row in rows] == [job["id"] for job in sweep["jobs"]]
    assert rows[2]["activation"] == "relu" and rows[2]["training.seed"] == "0"
    assert rows[2]["best.val_loss"] == "0.2" and rows[2]["test.test_accuracy"] == "0.8"
    assert rows[2]["epochs_to_target"] == "3" and rows[0]["epochs_to_target"] == ""
    assert "dataset.name" not in rows[0], "only differing spec fields become columns"


def test_curves_keep_spikes_when_downsampled(
    app: FastAPI, client: TestClient, auth_headers: dict[str, str]
) -> None:
    job = client.post("/v1/jobs", json={"spec": EXAMPLE_SPEC}, headers=auth_headers).json()
    losses = [1.0 / epoch for epoch in range(1, 101)]
    losses[56] = 50.0  # a spike at epoch 57
    finish_run(app, job["id"], losses)
    curve = compare(client, auth_headers, f"jobs={job['id']}&points=20&fields=val_loss")["curves"][job["id"]][
        "val_loss"
    ]
    assert len(curve) <= 20 and [57, 50.0] in curve and [100, 0.01] in curve
    assert [epoch for epoch, _ in curve] == sorted(epoch for epoch, _ in curve)


def test_downsample_keeps_each_bucket_min_and_max() -> None:
    curve = [(epoch, float(epoch % 7)) for epoch in range(1, 1001)]
    kept = downsample(curve, 100)
    assert len(kept) <= 100 and kept == sorted(kept)
    assert {value for _, value in kept} == {0.0, 6.0}
    assert downsample(curve[:50], 100) == curve[:50]


def test_spec_diff_flattens_nested_fields() -> None:
    common, differs = spec_diff(
        [{"a": {"b": 1, "c": [1, 2]}, "d": None}, {"a": {"b": 2, "c": [1, 2]}, "d": {"e": 1}}]
    )
    assert common == {"a.c": [1, 2]}
    assert differs == [{"a.b": 1, "d": None}, {"a.b": 2, "d.e": 1}]


def test_curves_are_read_in_one_query(app: FastAPI, client: TestClient, auth_headers: dict[str, str]) -> None:
    sweep = run_sweep(app, client, auth_headers)
    statements: list[str] = []

    def seen(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        statements.append(statement)

    event.listen(app.state.engine, "before_cursor_execute", seen)
    try:
        compare(
            client, auth_headers, f"sweep={sweep['id']}&target=val_accuracy>=0.8&fields=train_loss,val_loss"
        )
    finally:
        event.remove(app.state.engine, "before_cursor_execute", seen)
    metric_reads = [statement for statement in statements if "epoch_metric" in statement]
    assert len(metric_reads) == 1, metric_reads
    assert "layers" not in metric_reads[0], "only the requested fields are extracted"


@pytest.mark.parametrize(
    ("query", "status", "field"),
    [
        ("", 422, "jobs"),
        ("jobs=job_a&sweep=sw_b", 422, "jobs"),
        ("jobs=job_doesnotexist", 404, None),
        ("sweep=sw_doesnotexist", 404, None),
        ("jobs={job}&target=val_loss~0.3", 422, "target"),
        ("jobs={job}&fields=layers", 422, "fields"),
        ("jobs={job}&metric=val loss", 422, "metric"),
        ("jobs={job}&points=1", 422, "points"),
        ("jobs={job}&mode=best", 422, "mode"),
    ],
)
def test_bad_requests(
    client: TestClient, auth_headers: dict[str, str], query: str, status: int, field: str | None
) -> None:
    job = client.post("/v1/jobs", json={"spec": EXAMPLE_SPEC}, headers=auth_headers).json()
    response = client.get(f"/v1/compare?{query.format(job=job['id'])}", headers=auth_headers)
    assert response.status_code == status, response.text
    if field:
        assert response.json()["errors"][0]["field"] == field


def test_another_owners_job_is_404(
    client: TestClient, auth_headers: dict[str, str], other_headers: dict[str, str]
) -> None:
    mine = client.post("/v1/jobs", json={"spec": EXAMPLE_SPEC}, headers=auth_headers).json()["id"]
    theirs = client.post("/v1/jobs", json={"spec": EXAMPLE_SPEC}, headers=other_headers).json()["id"]
    response = client.get(f"/v1/compare?jobs={mine},{theirs}", headers=auth_headers)
    assert response.status_code == 404 and theirs in response.json()["detail"]
    assert client.get(f"/v1/compare/plot.png?jobs={theirs}", headers=auth_headers).status_code == 404
