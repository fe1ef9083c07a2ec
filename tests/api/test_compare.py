"""Compare: spec diff, seed groups with CIs, tests against the best, effects, targets, bands, CSV."""

from __future__ import annotations

import copy
import csv
import io
import statistics
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from scipy import stats
from sqlalchemy import event

from api.compare.service import spec_diff
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
    assert [group["seeds"] for group in groups] == [[0, 1], [0, 1]]
    relu = groups[1]["metrics"]
    assert relu["val_loss"]["mean"] == pytest.approx(statistics.fmean([0.2, 0.25]))
    assert relu["val_loss"]["std"] == pytest.approx(statistics.stdev([0.2, 0.25]))  # sample std, n - 1
    low, high = stats.t.interval(0.95, 1, loc=0.225, scale=stats.sem([0.2, 0.25]))
    assert relu["val_loss"]["ci_low"] == pytest.approx(low) and relu["val_loss"]["ci_high"] == pytest.approx(
        high
    )
    assert (relu["val_loss"]["n"], relu["val_loss"]["median"], relu["val_loss"]["max"]) == (2, 0.225, 0.25)
    assert relu["test_accuracy"]["mean"] == pytest.approx(0.825)
    assert relu["seconds"]["mean"] == 1.5 and relu["seconds"]["std"] == pytest.approx(
        statistics.stdev([1, 2])
    )
    assert result["best_group"] == 1 and "best_within_noise" not in result
    [test] = result["tests"]
    assert (test["best"], test["other"], test["test"]) == (1, 0, "paired")  # same seeds, same data
    assert test["p"] == pytest.approx(stats.ttest_rel([0.2, 0.25], [0.6, 0.5]).pvalue)
    assert test["p_holm"] == test["p"] and result["alpha"] == 0.05
    assert relu["epochs_to_target"]["mean"] == 2.5 and relu["epochs_to_target"]["n"] == 2
    assert groups[0]["metrics"]["epochs_to_target"]["n"] == 0
    assert [warning["kind"] for warning in result["warnings"]] == ["too_few_seeds"]
    assert result["effects"]["effects"][0]["contrast"] == "relu − sigmoid"
    sigmoid_band = result["bands"]["val_loss"][0]
    assert sigmoid_band["epochs"] == [1, 2, 3] and sigmoid_band["n"] == [2, 2, 2]
    assert sigmoid_band["mean"] == [1.0, pytest.approx(0.75), pytest.approx(0.55)]
    assert result["curves"] is None, "per-job curves only on request"
    with_curves = compare(client, auth_headers, f"sweep={sweep['id']}&job_curves=true")
    assert with_curves["curves"][first["id"]] == {
        "train_loss": [[1, 0.9], [2, pytest.approx(0.72)], [3, pytest.approx(0.54)]],
        "val_loss": [[1, 1.0], [2, 0.8], [3, 0.6]],
    }

    by_accuracy = compare(
        client, auth_headers, f"sweep={sweep['id']}&metric=val_accuracy&fields=val_accuracy"
    )
    assert by_accuracy["mode"] == "max" and by_accuracy["best_group"] == 1
    assert set(by_accuracy["bands"]) == {"val_accuracy"}
    worst = compare(client, auth_headers, f"sweep={sweep['id']}&mode=max")
    assert worst["best_group"] == 0


def test_overlapping_groups_are_not_distinguishable_and_say_how_many_seeds(
    app: FastAPI, client: TestClient, auth_headers: dict[str, str]
) -> None:
    ids = []
    for activation, losses in (("relu", [0.30, 0.40, 0.35]), ("tanh", [0.32, 0.45, 0.33])):
        for seed, loss in enumerate(losses):
            spec = copy.deepcopy(EXAMPLE_SPEC) | {"activation": activation}
            spec["training"] = spec["training"] | {"seed": seed}
            job = client.post("/v1/jobs", json={"spec": spec}, headers=auth_headers).json()
            finish_run(app, job["id"], [1.0, loss])
            ids.append(job["id"])
    result = compare(client, auth_headers, "jobs=" + ",".join(ids))
    assert [group["n"] for group in result["groups"]] == [3, 3] and result["best_group"] == 0
    [test] = result["tests"]
    assert test["test"] == "paired" and test["verdict"] == "not distinguishable at alpha 0.05"
    assert test["seeds_needed"] is not None and test["seeds_needed"] > 3
    lenient = compare(client, auth_headers, "alpha=0.5&jobs=" + ",".join(ids))
    assert lenient["alpha"] == 0.5 and lenient["tests"][0]["verdict"] == "better"
    single = compare(client, auth_headers, f"jobs={ids[0]},{ids[3]}")
    assert [group["n"] for group in single["groups"]] == [1, 1]
    summary = single["groups"][0]["metrics"]["val_loss"]
    assert (summary["mean"], summary["std"], summary["ci_low"], summary["n"]) == (0.3, None, None, 1)
    assert single["tests"][0]["verdict"] == "too few seeds to test" and single["tests"][0]["p"] is None


def test_running_and_failed_jobs_are_excluded_and_counted(
    app: FastAPI, client: TestClient, auth_headers: dict[str, str]
) -> None:
    body = {"name": "act", "base": EXAMPLE_SPEC, "grid": {"activation": ["sigmoid", "relu"]}, "seeds": 4}
    sweep = client.post("/v1/sweeps", json=body, headers=auth_headers).json()
    for job in sweep["jobs"]:
        status = {2: "failed"}.get(job["seed"], "succeeded")
        if (job["params"]["activation"], job["seed"]) != ("relu", 3):  # still queued
            finish_run(app, job["id"], [1.0, 0.5 + 0.01 * job["seed"]], status=status)
    result = compare(client, auth_headers, f"sweep={sweep['id']}")
    assert [group["seeds"] for group in result["groups"]] == [[0, 1, 3], [0, 1]]
    assert [group["excluded"] for group in result["groups"]] == [{"failed": 1}, {"failed": 1, "queued": 1}]
    kinds = {warning["kind"]: warning for warning in result["warnings"]}
    assert kinds["excluded_jobs"]["message"].startswith(
        "3 jobs left out of the statistics (2 failed, 1 queued)"
    )
    assert kinds["too_few_seeds"]["groups"] == [1]
    assert result["tests"][0]["test"] == "welch" and "different seeds" in result["tests"][0]["reason"]
    assert [band["n"] for band in result["bands"]["val_loss"]] == [[3, 3], [2, 2]]


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


def test_csv_tables_hold_every_statistic(
    app: FastAPI, client: TestClient, auth_headers: dict[str, str]
) -> None:
    sweep = run_sweep(app, client, auth_headers)

    def table(name: str) -> list[dict[str, str]]:
        response = client.get(
            f"/v1/compare?sweep={sweep['id']}&format=csv&table={name}", headers=auth_headers
        )
        assert response.status_code == 200, response.text
        assert f'filename="compare-{name}.csv"' in response.headers["content-disposition"]
        return list(csv.DictReader(io.StringIO(response.text)))

    result = compare(client, auth_headers, f"sweep={sweep['id']}")
    groups = table("groups")
    assert [row["activation"] for row in groups] == ["sigmoid", "relu"]
    assert float(groups[1]["val_loss.ci_high"]) == pytest.approx(
        result["groups"][1]["metrics"]["val_loss"]["ci_high"]
    )
    assert (
        groups[0]["vs_best.test"] == "paired"
        and groups[1]["vs_best.test"] == ""
        and groups[1]["best"] == "True"
    )
    assert float(groups[0]["vs_best.p_holm"]) == pytest.approx(result["tests"][0]["p_holm"])
    [effect] = table("effects")
    assert effect["contrast"] == "relu − sigmoid" and float(effect["estimate"]) == pytest.approx(0.225 - 0.55)
    bands = table("bands")
    assert len(bands) == 2 * 2 * 3 and bands[0] == {
        "group": "0",
        "field": "train_loss",
        "epoch": "1",
        "mean": "0.9",
        "ci_low": "0.9",
        "ci_high": "0.9",
        "n": "2",
    }


def test_long_curves_keep_the_same_epochs_for_every_group_and_job(
    app: FastAPI, client: TestClient, auth_headers: dict[str, str]
) -> None:
    ids = []
    for epochs in (100, 60):  # the second run stopped early
        job = client.post("/v1/jobs", json={"spec": EXAMPLE_SPEC}, headers=auth_headers).json()
        finish_run(app, job["id"], [1.0 / epoch for epoch in range(1, epochs + 1)])
        ids.append(job["id"])
    result = compare(client, auth_headers, f"jobs={','.join(ids)}&points=20&fields=val_loss&job_curves=true")
    [band] = result["bands"]["val_loss"]  # same spec: one group of two
    assert len(band["epochs"]) == 20 and band["epochs"][0] == 1 and band["epochs"][-1] == 100
    assert band["n"] == [2 if epoch <= 60 else 1 for epoch in band["epochs"]]
    for job_id in ids:
        kept = [epoch for epoch, _value in result["curves"][job_id]["val_loss"]]
        assert kept == [epoch for epoch in band["epochs"] if epoch <= (100 if job_id == ids[0] else 60)]
    plot = client.get(f"/v1/compare/plot.png?jobs={','.join(ids)}", headers=auth_headers)
    assert plot.status_code == 200 and plot.content.startswith(b"\x89PNG")  # the band, ▼ where n drops


def test_spec_diff_flattens_nested_fields() -> None:
    common, differs = spec_diff(
        [{"a": {"b": 1, "c": [1, 2]}, "d": None}, {"a": {"b": 2, "c": [1, 2]}, "d": {"e": 1}}]
    )
    assert common == {"a.c": [1, 2]}
    assert differs == [{"a.b": 1, "d": None}, {"a.b": 2, "d.e": 1}]


def test_finished_jobs_curves_come_from_the_curve_store(
    app: FastAPI, client: TestClient, auth_headers: dict[str, str]
) -> None:
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
    # Finished jobs: their curve-store rows of just these fields, no epoch row.
    assert not [statement for statement in statements if "epoch_metric" in statement]
    curve_reads = [statement for statement in statements if "job_curve" in statement]
    assert len(curve_reads) == 2, curve_reads
    assert "field IN" in curve_reads[1] and "layers" not in curve_reads[1]


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
        ("jobs={job}&alpha=0", 422, "alpha"),
        ("jobs={job}&alpha=1", 422, "alpha"),
        ("jobs={job}&format=csv&table=everything", 422, "table"),
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
