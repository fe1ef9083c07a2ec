"""Sweeps: grid × seeds expansion, validation before anything is stored, limits, cancel, isolation."""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

from fastapi import FastAPI
from fastapi.testclient import TestClient

from api.sweeps.schemas import MAX_GRID_VALUES
from core.config import Settings
from core.models import Job, JobStatus, Sweep
from tests.api.conftest import PROBLEM
from training.spec import EXAMPLE_SPEC

GRID = {"activation": ["sigmoid", "relu"], "normalization.layers": ["none", "batch"]}


def sweep_body(**changes: Any) -> dict[str, Any]:
    base = copy.deepcopy(EXAMPLE_SPEC)
    base["training"]["seed"] = 7
    return {"name": "act-x-norm", "base": base, "grid": GRID, "seeds": 3, **changes}


def post_sweep(client: TestClient, headers: dict[str, str], **changes: Any) -> Any:
    return client.post("/v1/sweeps", json=sweep_body(**changes), headers=headers)


def assert_refused(response: Any, status: int, field: str, *words: str) -> None:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith(PROBLEM)
    problem = response.json()
    if field:
        assert problem["errors"][0]["field"] == field, problem
    for word in words:
        assert word in problem["detail"], problem


def test_one_job_per_grid_point_and_seed(client: TestClient, auth_headers: dict[str, str]) -> None:
    response = post_sweep(client, auth_headers, tags=["exp"])
    assert response.status_code == 202, response.text
    assert response.headers["location"] == f"/v1/sweeps/{response.json()['id']}"
    sweep = response.json()
    assert sweep["id"].startswith("sw_") and sweep["name"] == "act-x-norm"
    assert sweep["size"] == 12 and len(sweep["jobs"]) == 12
    assert sweep["counts"] == {"queued": 12, "running": 0, "succeeded": 0, "failed": 0, "cancelled": 0}
    points = [(job["params"]["activation"], job["params"]["normalization.layers"]) for job in sweep["jobs"]]
    assert points[::3] == [("sigmoid", "none"), ("sigmoid", "batch"), ("relu", "none"), ("relu", "batch")]
    assert [job["seed"] for job in sweep["jobs"][:3]] == [7, 8, 9], "seed i = base seed + i"

    for entry in sweep["jobs"][:4]:
        job = client.get(f"/v1/jobs/{entry['id']}", headers=auth_headers).json()
        assert job["status"] == "queued" and job["sweep_id"] == sweep["id"] and job["tags"] == ["exp"]
        assert job["sweep_params"] == entry["params"]
        assert job["spec"]["activation"] == entry["params"]["activation"]
        assert job["spec"]["normalization"]["layers"] == entry["params"]["normalization.layers"]
        assert job["spec"]["training"]["seed"] == entry["seed"] == entry["params"]["training.seed"]
        assert job["spec"]["optimizer"] == {"name": "adam", "learning_rate": 0.01, **job["spec"]["optimizer"]}

    again = client.get(f"/v1/sweeps/{sweep['id']}", headers=auth_headers).json()
    assert again["jobs"] == sweep["jobs"] and again["grid"] == GRID and again["seeds"] == 3


def test_a_grid_value_switching_a_union_takes_that_member_defaults(
    client: TestClient, auth_headers: dict[str, str]
) -> None:
    response = post_sweep(client, auth_headers, grid={"optimizer.name": ["sgd", "rmsprop"]}, seeds=1)
    assert response.status_code == 202, response.text
    specs = [
        client.get(f"/v1/jobs/{job['id']}", headers=auth_headers).json()["spec"]
        for job in response.json()["jobs"]
    ]
    assert [spec["optimizer"]["name"] for spec in specs] == ["sgd", "rmsprop"]
    assert all(spec["optimizer"]["learning_rate"] == 0.01 for spec in specs), "the base's own keys are kept"


def test_nested_paths_create_missing_objects(client: TestClient, auth_headers: dict[str, str]) -> None:
    response = post_sweep(client, auth_headers, grid={"clipping.max_norm": [0.5, 1.0]}, seeds=1)
    assert response.status_code == 202, response.text
    job = client.get(f"/v1/jobs/{response.json()['jobs'][1]['id']}", headers=auth_headers).json()
    assert job["spec"]["clipping"]["max_norm"] == 1.0


def test_an_empty_grid_repeats_the_base_over_seeds(client: TestClient, auth_headers: dict[str, str]) -> None:
    response = post_sweep(client, auth_headers, grid={}, seeds=2)
    assert response.status_code == 202, response.text
    assert [job["params"] for job in response.json()["jobs"]] == [{"training.seed": 7}, {"training.seed": 8}]


def test_bad_values_and_paths_are_refused_before_anything_is_stored(
    client: TestClient, auth_headers: dict[str, str], count_rows: Callable[[type], int]
) -> None:
    grid = {"activation": ["sigmoid", "bogus"], "normalization.layers": ["none"]}
    assert_refused(
        post_sweep(client, auth_headers, grid=grid), 422, "grid.activation[1]", "unknown activation"
    )
    grid = {"optimizer.learning_rate": [0.1, -1]}
    assert_refused(
        post_sweep(client, auth_headers, grid=grid), 422, "grid.optimizer.learning_rate[1]", "greater"
    )
    assert_refused(
        post_sweep(client, auth_headers, grid={"foo.bar": [1]}), 422, "grid.foo.bar", "unknown key 'foo'"
    )
    assert_refused(
        post_sweep(client, auth_headers, grid={"normalization.lazers": ["batch"]}),
        422,
        "grid.normalization.lazers",
        "unknown key",
    )
    assert_refused(
        post_sweep(client, auth_headers, grid={"activation.kind": ["x"]}),
        422,
        "grid.activation.kind",
        "not an object",
    )
    assert_refused(
        post_sweep(client, auth_headers, grid={"training.seed": [1, 2]}), 422, "grid.training.seed", "seeds"
    )
    assert_refused(
        post_sweep(client, auth_headers, grid={"activation": []}), 422, "grid.activation", "at least one"
    )
    assert_refused(post_sweep(client, auth_headers, grid={"Bad Path": [1]}), 422, "grid.Bad Path")
    # A spec the service cannot run (a path on its disk) is refused for the grid point, not at run time.
    grid = {"dataset": [{"path": "/srv/data/points.csv"}]}
    assert_refused(post_sweep(client, auth_headers, grid=grid), 422, "spec.dataset.path", "upload")
    assert count_rows(Job) == 0 and count_rows(Sweep) == 0


def test_a_combination_invalid_only_together_is_named(
    client: TestClient, auth_headers: dict[str, str], count_rows: Callable[[type], int]
) -> None:
    base = {
        "dataset": {"name": "adding", "length": 10, "samples": 200},
        "network": {"type": "rnn", "cell": "lstm", "hidden_size": 8},
        "activation": "tanh",
        "training": {"epochs": 2},
    }
    grid = {"network.cell": ["lstm", "rnn"], "activation": ["tanh", "sigmoid"]}
    response = client.post(
        "/v1/sweeps", json={"name": "rnn", "base": base, "grid": grid, "seeds": 1}, headers=auth_headers
    )
    assert_refused(response, 422, "", "network.cell='rnn', activation='sigmoid'", "tanh or relu")
    assert count_rows(Job) == 0


def test_size_limit_and_queue_quota(
    client: TestClient, auth_headers: dict[str, str], settings: Settings, count_rows: Callable[[type], int]
) -> None:
    many = {"optimizer.learning_rate": [0.001 * (i + 1) for i in range(100)]}
    assert_refused(
        post_sweep(client, auth_headers, grid=many, seeds=3),
        422,
        "grid",
        "300 jobs",
        "256",
        "TRAINCTL_MAX_SWEEP_JOBS",
    )
    settings.max_sweep_jobs = 4
    assert_refused(post_sweep(client, auth_headers, seeds=2), 422, "grid", "8 jobs", "limit is 4")
    settings.max_sweep_jobs = 256
    settings.max_queued_jobs_per_owner = 10
    response = post_sweep(client, auth_headers, seeds=3)
    assert response.status_code == 429 and "adds 12" in response.json()["detail"], response.text
    assert count_rows(Job) == 0 and count_rows(Sweep) == 0


def test_list_pages_newest_first(client: TestClient, auth_headers: dict[str, str]) -> None:
    ids = [post_sweep(client, auth_headers, name=f"s{i}", seeds=1).json()["id"] for i in range(3)]
    first = client.get("/v1/sweeps?limit=2", headers=auth_headers).json()
    assert [item["id"] for item in first["items"]] == ids[::-1][:2]
    assert first["items"][0]["counts"]["queued"] == 4 and first["items"][0]["size"] == 4
    second = client.get(f"/v1/sweeps?limit=2&cursor={first['next_cursor']}", headers=auth_headers).json()
    assert [item["id"] for item in second["items"]] == [ids[0]] and second["next_cursor"] is None
    assert client.get("/v1/sweeps?cursor=nonsense", headers=auth_headers).status_code == 422


def test_cancel_stops_every_unfinished_job(
    app: FastAPI, client: TestClient, auth_headers: dict[str, str]
) -> None:
    sweep = post_sweep(client, auth_headers, seeds=1).json()
    running, done, *queued = (job["id"] for job in sweep["jobs"])
    with app.state.session_factory() as session:
        session.get(Job, running).status = JobStatus.running  # type: ignore[union-attr]
        session.get(Job, done).status = JobStatus.succeeded  # type: ignore[union-attr]
        session.commit()
    response = client.post(f"/v1/sweeps/{sweep['id']}/cancel", headers=auth_headers)
    assert response.status_code == 200, response.text
    assert response.json()["counts"] == {
        "queued": 0,
        "running": 1,
        "succeeded": 1,
        "failed": 0,
        "cancelled": 2,
    }
    assert client.get(f"/v1/jobs/{running}", headers=auth_headers).json()["cancel_requested"] is True
    assert all(
        client.get(f"/v1/jobs/{job}", headers=auth_headers).json()["status"] == "cancelled" for job in queued
    )


def test_another_owner_sees_no_sweep(
    client: TestClient, auth_headers: dict[str, str], other_headers: dict[str, str]
) -> None:
    sweep_id = post_sweep(client, auth_headers, seeds=1).json()["id"]
    assert client.get(f"/v1/sweeps/{sweep_id}", headers=other_headers).status_code == 404
    assert client.post(f"/v1/sweeps/{sweep_id}/cancel", headers=other_headers).status_code == 404
    assert client.get(f"/v1/compare?sweep={sweep_id}", headers=other_headers).status_code == 404
    assert client.get("/v1/sweeps", headers=other_headers).json()["items"] == []
    assert client.get(f"/v1/sweeps/{sweep_id}", headers=auth_headers).json()["counts"]["queued"] == 4


def test_a_grid_path_with_too_many_values_is_refused(
    client: TestClient, auth_headers: dict[str, str], count_rows: Callable[[type], int]
) -> None:
    values = [0.001 * (i + 1) for i in range(MAX_GRID_VALUES + 1)]
    response = post_sweep(client, auth_headers, grid={"optimizer.learning_rate": values}, seeds=1)
    assert_refused(response, 422, "grid.optimizer.learning_rate", str(MAX_GRID_VALUES))
    assert count_rows(Job) == 0 and count_rows(Sweep) == 0
    at_limit = post_sweep(client, auth_headers, grid={"optimizer.learning_rate": values[:-1]}, seeds=1)
    assert at_limit.status_code == 202, at_limit.text
