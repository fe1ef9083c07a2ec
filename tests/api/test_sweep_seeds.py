"""POST /v1/sweeps/{id}/seeds: only the missing seeds run; limits, quota and owners apply."""

from __future__ import annotations

from collections.abc import Callable

from fastapi import FastAPI
from fastapi.testclient import TestClient

from core.config import Settings
from core.models import Job, JobStatus
from tests.api.test_sweeps import assert_refused, post_sweep


def test_only_missing_seeds_run(app: FastAPI, client: TestClient, auth_headers: dict[str, str]) -> None:
    sweep = post_sweep(client, auth_headers, seeds=2, tags=["exp"]).json()  # 4 points × seeds 7, 8
    failed, done = sweep["jobs"][0]["id"], sweep["jobs"][1]["id"]
    with app.state.session_factory() as session:
        session.get(Job, failed).status = JobStatus.failed  # type: ignore[union-attr]
        session.get(Job, done).status = JobStatus.succeeded  # type: ignore[union-attr]
        session.commit()
    response = client.post(f"/v1/sweeps/{sweep['id']}/seeds", json={"seeds": 3}, headers=auth_headers)
    assert response.status_code == 202, response.text
    grown = response.json()
    assert grown["seeds"] == 3 and grown["size"] == 12 and len(grown["added"]) == 5  # 4 × seed 9, failed 7
    added = [job for job in grown["jobs"] if job["id"] in grown["added"]]
    assert sorted(
        (job["params"]["activation"], job["params"]["normalization.layers"], job["seed"]) for job in added
    ) == [
        ("relu", "batch", 9),
        ("relu", "none", 9),
        ("sigmoid", "batch", 9),
        ("sigmoid", "none", 7),
        ("sigmoid", "none", 9),
    ]
    job = client.get(f"/v1/jobs/{added[0]['id']}", headers=auth_headers).json()
    assert job["status"] == "queued" and job["tags"] == ["exp"] and job["sweep_id"] == sweep["id"]
    assert job["spec"]["training"]["seed"] == added[0]["seed"] == job["sweep_params"]["training.seed"]
    again = client.post(f"/v1/sweeps/{sweep['id']}/seeds", json={"seeds": 3}, headers=auth_headers).json()
    assert again["added"] == [] and len(again["jobs"]) == 13, "nothing runs twice"
    fewer = client.post(f"/v1/sweeps/{sweep['id']}/seeds", json={"seeds": 1}, headers=auth_headers).json()
    assert fewer["added"] == [] and fewer["seeds"] == 3


def test_limits_quota_and_owners(
    client: TestClient,
    auth_headers: dict[str, str],
    other_headers: dict[str, str],
    settings: Settings,
    count_rows: Callable[[type], int],
) -> None:
    sweep_id = post_sweep(client, auth_headers, seeds=1).json()["id"]
    url = f"/v1/sweeps/{sweep_id}/seeds"
    assert_refused(client.post(url, json={"seeds": 0}, headers=auth_headers), 422, "seeds")
    assert_refused(client.post(url, json={"seeds": 101}, headers=auth_headers), 422, "seeds")
    settings.max_sweep_jobs = 8
    assert_refused(
        client.post(url, json={"seeds": 3}, headers=auth_headers),
        422,
        "seeds",
        "12 jobs",
        "TRAINCTL_MAX_SWEEP_JOBS",
    )
    settings.max_sweep_jobs = 256
    settings.max_queued_jobs_per_owner = 8
    response = client.post(url, json={"seeds": 3}, headers=auth_headers)
    assert response.status_code == 429 and "adds 8" in response.json()["detail"], response.text
    assert client.post(url, json={"seeds": 2}, headers=other_headers).status_code == 404
    assert count_rows(Job) == 4
