"""Submitting, idempotency, listing, reading, cancelling and deleting jobs."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from fastapi import FastAPI
from fastapi.testclient import TestClient

from core.config import Settings
from core.models import Checkpoint, EpochMetric, Job, JobTag
from tests.api.conftest import PROBLEM
from training.spec import EXAMPLE_SPEC


def test_submit_answers_202_with_a_queued_job(client: TestClient, auth_headers: dict[str, str]) -> None:
    response = client.post(
        "/v1/jobs",
        json={"name": "iris", "tags": ["demo", "demo", "adam"], "spec": EXAMPLE_SPEC},
        headers=auth_headers,
    )
    assert response.status_code == 202, response.text
    job = response.json()
    assert response.headers["location"] == f"/v1/jobs/{job['id']}"
    assert job["status"] == "queued" and job["name"] == "iris"
    assert job["tags"] == ["adam", "demo"]
    assert job["progress"] == {"epoch": 0, "epochs": 30, "eta_seconds": None}
    assert job["spec"]["optimizer"]["learning_rate"] == 0.01
    assert job["spec"]["training"]["device"] == "auto"  # defaults are filled in
    assert job["warnings"] == []
    assert job["created_at"].endswith("Z")
    assert client.get(f"/v1/jobs/{job['id']}", headers=auth_headers).json() == job


def test_lint_warnings_come_back_and_are_stored(client: TestClient, auth_headers: dict[str, str]) -> None:
    spec = {**EXAMPLE_SPEC, "initialization": "zeros"}
    job = client.post("/v1/jobs", json={"spec": spec}, headers=auth_headers).json()
    assert [warning["code"] for warning in job["warnings"]] == ["zeros_initialization"]
    assert client.get(f"/v1/jobs/{job['id']}", headers=auth_headers).json()["warnings"] == job["warnings"]


def test_idempotency_key(
    client: TestClient,
    auth_headers: dict[str, str],
    other_headers: dict[str, str],
    count_rows: Callable[[type], int],
) -> None:
    body = {"name": "retry-me", "spec": EXAMPLE_SPEC}
    first = client.post("/v1/jobs", json=body, headers={**auth_headers, "Idempotency-Key": "k1"})
    again = client.post("/v1/jobs", json=body, headers={**auth_headers, "Idempotency-Key": "k1"})
    assert (first.status_code, again.status_code) == (202, 200)
    assert again.json()["id"] == first.json()["id"]
    # The same request spelled differently (a default written out) is the same body.
    explicit = {**body, "tags": [], "spec": {**EXAMPLE_SPEC, "activation": "poslin"}}
    same = client.post("/v1/jobs", json=explicit, headers={**auth_headers, "Idempotency-Key": "k1"})
    assert same.status_code == 200 and same.json()["id"] == first.json()["id"]

    changed = client.post(
        "/v1/jobs", json={**body, "name": "other"}, headers={**auth_headers, "Idempotency-Key": "k1"}
    )
    assert changed.status_code == 409 and changed.headers["content-type"].startswith(PROBLEM)
    assert "k1" in changed.json()["detail"]

    # Keys are scoped per owner: bob's k1 is a new job.
    bobs = client.post("/v1/jobs", json=body, headers={**other_headers, "Idempotency-Key": "k1"})
    assert bobs.status_code == 202 and bobs.json()["id"] != first.json()["id"]
    assert count_rows(Job) == 2


def test_list_is_newest_first_with_cursor_pages(
    client: TestClient, auth_headers: dict[str, str], submit: Callable[..., dict[str, Any]]
) -> None:
    ids = [submit(name=f"job-{index}")["id"] for index in range(5)]
    seen: list[str] = []
    cursor = None
    pages = 0
    while True:
        params: dict[str, Any] = {"limit": 2} | ({"cursor": cursor} if cursor else {})
        page = client.get("/v1/jobs", params=params, headers=auth_headers).json()
        seen += [item["id"] for item in page["items"]]
        pages += 1
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert pages == 3
    assert seen == list(reversed(ids))


def test_list_filters(
    client: TestClient,
    auth_headers: dict[str, str],
    submit: Callable[..., dict[str, Any]],
    finish_job: Callable[..., None],
) -> None:
    tagged = submit(name="a", tags=["sweep-1"])
    other = submit(name="b", tags=["sweep-2"])
    finish_job(other["id"])

    def ids(**params: Any) -> list[str]:
        return [
            item["id"] for item in client.get("/v1/jobs", params=params, headers=auth_headers).json()["items"]
        ]

    assert ids(tag="sweep-1") == [tagged["id"]]
    assert ids(name="b") == [other["id"]]
    assert ids(status="succeeded") == [other["id"]]
    assert ids(status="queued", tag="sweep-1") == [tagged["id"]]
    assert ids(status="running") == []
    # The list carries result summaries, so finished jobs can be compared without fetching each one.
    listed = client.get("/v1/jobs", params={"status": "succeeded"}, headers=auth_headers).json()["items"]
    assert listed[0]["result"]["test"] == {"accuracy": 0.9}


def test_detail_shows_result_progress_and_worker(
    client: TestClient,
    auth_headers: dict[str, str],
    submit: Callable[..., dict[str, Any]],
    finish_job: Callable[..., None],
    app: FastAPI,
) -> None:
    job_id = submit()["id"]
    with app.state.session_factory() as session:
        job = session.get(Job, job_id)
        assert job is not None
        job.status, job.epoch, job.epoch_seconds = "running", 10, 0.5
        session.commit()
    running = client.get(f"/v1/jobs/{job_id}", headers=auth_headers).json()
    assert running["progress"] == {"epoch": 10, "epochs": 30, "eta_seconds": 10.0}

    finish_job(job_id, epochs=12)
    done = client.get(f"/v1/jobs/{job_id}", headers=auth_headers).json()
    assert done["status"] == "succeeded" and done["worker"] == "cpu-0@test" and done["device"] == "cpu"
    assert done["result"]["best_epoch"] == 12 and done["result"]["stopped_early"] is False
    assert done["result"]["test"] == {"accuracy": 0.9}
    assert done["progress"]["eta_seconds"] is None


def test_cancel(
    client: TestClient,
    auth_headers: dict[str, str],
    submit: Callable[..., dict[str, Any]],
    finish_job: Callable[..., None],
    app: FastAPI,
) -> None:
    queued = submit()["id"]
    cancelled = client.post(f"/v1/jobs/{queued}/cancel", headers=auth_headers)
    assert cancelled.status_code == 200
    assert cancelled.json()["status"] == "cancelled" and cancelled.json()["finished_at"]
    assert client.post(f"/v1/jobs/{queued}/cancel", headers=auth_headers).status_code == 200  # harmless

    running = submit()["id"]
    with app.state.session_factory() as session:
        job = session.get(Job, running)
        assert job is not None
        job.status = "running"
        session.commit()
    flagged = client.post(f"/v1/jobs/{running}/cancel", headers=auth_headers).json()
    assert flagged["status"] == "running" and flagged["cancel_requested"] is True

    done = submit()["id"]
    finish_job(done)
    refused = client.post(f"/v1/jobs/{done}/cancel", headers=auth_headers)
    assert refused.status_code == 409 and refused.headers["content-type"].startswith(PROBLEM)


def test_delete_only_finished_jobs_and_everything_goes(
    client: TestClient,
    auth_headers: dict[str, str],
    submit: Callable[..., dict[str, Any]],
    finish_job: Callable[..., None],
    settings: Settings,
    count_rows: Callable[[type], int],
) -> None:
    job_id = submit(tags=["t"])["id"]
    assert client.delete(f"/v1/jobs/{job_id}", headers=auth_headers).status_code == 409
    finish_job(job_id)
    job_folder = Path(settings.resolved_artifacts_url) / "jobs" / job_id
    assert job_folder.exists()

    response = client.delete(f"/v1/jobs/{job_id}", headers=auth_headers)
    assert response.status_code == 204 and response.content == b""
    assert client.get(f"/v1/jobs/{job_id}", headers=auth_headers).status_code == 404
    assert client.delete(f"/v1/jobs/{job_id}", headers=auth_headers).status_code == 404
    assert [count_rows(model) for model in (Job, JobTag, EpochMetric, Checkpoint)] == [0, 0, 0, 0]
    assert not job_folder.exists()


def test_unknown_job_is_404_problem(client: TestClient, auth_headers: dict[str, str]) -> None:
    response = client.get("/v1/jobs/job_nope", headers=auth_headers)
    assert response.status_code == 404 and response.headers["content-type"].startswith(PROBLEM)
    assert "job_nope" in response.json()["detail"]


def test_submission_publishes_the_job_id_after_commit(
    settings: Settings, client: TestClient, auth_headers: dict[str, str], app: FastAPI
) -> None:
    # A queue of this test's own (device "auto" goes to the default queue), read with the app's broker.
    settings.default_queue = f"test-{uuid.uuid4().hex[:8]}"
    job_id = client.post("/v1/jobs", json={"spec": EXAMPLE_SPEC}, headers=auth_headers).json()["id"]
    with app.state.celery.connection_for_read() as connection:
        queue = connection.SimpleQueue(settings.default_queue)
        try:
            message = queue.get(timeout=10)
            message.ack()
        finally:
            queue.close()
    assert message.headers["task"] == "trainctl.run_job"
    args = message.payload[0]
    assert args == [job_id]  # the id only: the worker reads everything else from the database


def test_concurrent_retries_with_one_key_make_one_job(app: FastAPI, settings: Settings) -> None:
    from concurrent.futures import ThreadPoolExecutor

    from api.jobs.schemas import JobCreate
    from api.jobs.service import submit_job

    request = JobCreate.model_validate({"name": "race", "spec": EXAMPLE_SPEC})

    def attempt(_: int) -> tuple[str, bool]:
        with app.state.session_factory() as session:
            job, created = submit_job(
                session,
                owner="alice",
                request=request,
                settings=settings,
                celery_app=app.state.celery,
                idempotency_key="same-key",
            )
            return job.id, created

    with ThreadPoolExecutor(max_workers=6) as pool:
        outcomes = list(pool.map(attempt, range(6)))
    assert len({job_id for job_id, _ in outcomes}) == 1
    assert sum(created for _, created in outcomes) == 1
