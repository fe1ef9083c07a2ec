"""Organizing runs: PATCH jobs and sweeps, DELETE sweeps and datasets, sorting the job list by a metric."""

from __future__ import annotations

import copy
from collections.abc import Callable
from pathlib import Path
from typing import Any

from fastapi import FastAPI
from fastapi.testclient import TestClient

from core.config import Settings
from core.models import Checkpoint, EpochMetric, Job, JobStatus, JobTag, Sweep
from tests.api.conftest import PROBLEM
from training.spec import EXAMPLE_SPEC


def set_result(app: FastAPI, job_id: str, *, test_accuracy: float | None, val_loss: float | None) -> None:
    """Finish a job with the given test accuracy and best-epoch val_loss (None: no such metric)."""
    with app.state.session_factory() as session:
        job = session.get(Job, job_id)
        assert job is not None
        job.status = JobStatus.succeeded
        best = {"epoch": 1} | ({"val_loss": val_loss} if val_loss is not None else {})
        test = {"test_loss": 0.5} | ({"test_accuracy": test_accuracy} if test_accuracy is not None else {})
        job.result = {"status": "succeeded", "epochs_run": 1, "best": best, "final": best, "test": test}
        session.commit()


def test_patch_job_sets_only_the_fields_given(
    client: TestClient,
    auth_headers: dict[str, str],
    other_headers: dict[str, str],
    submit: Callable[..., Any],
) -> None:
    job = submit(name="first", tags=["a", "b"])
    url = f"/v1/jobs/{job['id']}"
    changed = client.patch(url, json={"tags": ["b", "c", "c"], "notes": "lr too high"}, headers=auth_headers)
    assert changed.status_code == 200, changed.text
    body = changed.json()
    assert (body["name"], body["tags"], body["notes"]) == ("first", ["b", "c"], "lr too high")
    assert body["spec"] == job["spec"] and body["status"] == "queued"
    cleared = client.patch(url, json={"name": None, "notes": None}, headers=auth_headers).json()
    assert (cleared["name"], cleared["tags"], cleared["notes"]) == (None, ["b", "c"], None)
    assert (
        client.get("/v1/jobs", params={"tag": "c"}, headers=auth_headers).json()["items"][0]["id"]
        == job["id"]
    )

    refused = client.patch(url, json={"spec": EXAMPLE_SPEC, "notes": "\x00"}, headers=auth_headers)
    assert refused.status_code == 422 and refused.headers["content-type"].startswith(PROBLEM)
    assert {error["field"] for error in refused.json()["errors"]} == {"spec", "notes"}
    assert client.patch(url, json={"notes": "x"}, headers=other_headers).status_code == 404


def test_sort_by_a_result_metric_pages_stably(
    app: FastAPI, client: TestClient, auth_headers: dict[str, str], submit: Callable[..., Any]
) -> None:
    accuracies = [0.7, 0.9, None, 0.8, 0.9, 0.6]
    ids = []
    for index, accuracy in enumerate(accuracies):
        job_id = submit(name=f"j{index}")["id"]
        ids.append(job_id)
        set_result(app, job_id, test_accuracy=accuracy, val_loss=None if accuracy is None else 1 - accuracy)
    unfinished = submit(name="queued")["id"]

    def pages(sort: str) -> list[str]:
        seen, cursor = [], None
        while True:
            params = {"sort": sort, "limit": 2} | ({"cursor": cursor} if cursor else {})
            page = client.get("/v1/jobs", params=params, headers=auth_headers)
            assert page.status_code == 200, page.text
            seen += [item["id"] for item in page.json()["items"]]
            cursor = page.json()["next_cursor"]
            if cursor is None:
                return seen
            submit(name="arrives-meanwhile")  # new jobs neither repeat nor hide rows on later pages

    by_accuracy = pages("-test_accuracy")
    expected = [ids[4], ids[1], ids[3], ids[0], ids[5]]  # ties: newest first
    assert by_accuracy[:5] == expected
    assert ids[2] in by_accuracy[5:] and unfinished in by_accuracy[5:]  # no metric: last
    assert len(by_accuracy) == len(set(by_accuracy))
    by_loss = pages("val_loss")
    assert by_loss[:5] == expected
    oldest_first = pages("created")
    assert oldest_first[: len(ids)] == ids

    refused = client.get("/v1/jobs", params={"sort": "learning_rate"}, headers=auth_headers)
    assert refused.status_code == 422 and refused.json()["errors"][0]["field"] == "sort"
    first = client.get("/v1/jobs", params={"sort": "val_loss", "limit": 1}, headers=auth_headers).json()
    mixed = client.get("/v1/jobs", params={"cursor": first["next_cursor"]}, headers=auth_headers)
    assert mixed.status_code == 422 and mixed.json()["errors"][0]["field"] == "cursor"


def sweep_body() -> dict[str, Any]:
    base = copy.deepcopy(EXAMPLE_SPEC)
    return {"name": "lr", "base": base, "grid": {"optimizer.learning_rate": [0.01, 0.1]}, "tags": ["old"]}


def test_patch_sweep_passes_its_tags_to_its_jobs(client: TestClient, auth_headers: dict[str, str]) -> None:
    sweep = client.post("/v1/sweeps", json=sweep_body(), headers=auth_headers).json()
    first = sweep["jobs"][0]["id"]
    client.patch(f"/v1/jobs/{first}", json={"tags": ["old", "mine"]}, headers=auth_headers)
    changed = client.patch(
        f"/v1/sweeps/{sweep['id']}",
        json={"name": "lr-2", "tags": ["new"], "notes": "n"},
        headers=auth_headers,
    )
    assert changed.status_code == 200, changed.text
    assert (changed.json()["name"], changed.json()["tags"], changed.json()["notes"]) == ("lr-2", ["new"], "n")
    tags = {
        job["id"]: client.get(f"/v1/jobs/{job['id']}", headers=auth_headers).json()["tags"]
        for job in sweep["jobs"]
    }
    assert tags == {first: ["mine", "new"], sweep["jobs"][1]["id"]: ["new"]}
    listed = client.get("/v1/sweeps", headers=auth_headers).json()["items"][0]
    assert (listed["tags"], listed["notes"]) == (["new"], "n")
    no_name = client.patch(f"/v1/sweeps/{sweep['id']}", json={"name": None}, headers=auth_headers)
    assert no_name.status_code == 422 and no_name.json()["errors"][0]["field"] == "name"


def test_delete_sweep_only_when_every_job_has_finished(
    client: TestClient,
    auth_headers: dict[str, str],
    other_headers: dict[str, str],
    finish_job: Callable[..., None],
    settings: Settings,
    count_rows: Callable[[type], int],
) -> None:
    sweep = client.post("/v1/sweeps", json=sweep_body(), headers=auth_headers).json()
    url = f"/v1/sweeps/{sweep['id']}"
    ids = [job["id"] for job in sweep["jobs"]]
    finish_job(ids[0])
    refused = client.delete(url, headers=auth_headers)
    assert refused.status_code == 409 and ids[1] in refused.json()["detail"]
    assert client.delete(url, headers=other_headers).status_code == 404
    finish_job(ids[1], status="cancelled", checkpoint=None)
    assert client.delete(url, headers=auth_headers).status_code == 204
    assert client.get(url, headers=auth_headers).status_code == 404
    assert [count_rows(model) for model in (Sweep, Job, JobTag, EpochMetric, Checkpoint)] == [0] * 5
    assert not (Path(settings.resolved_artifacts_url) / "jobs" / ids[0]).exists()


def test_delete_dataset_refused_while_a_queued_job_uses_it(
    app: FastAPI, client: TestClient, auth_headers: dict[str, str], settings: Settings
) -> None:
    content = b"a,b,label\n" + b"".join(f"{i},{i % 5},{i % 2}\n".encode() for i in range(30))
    dataset = client.post("/v1/datasets", files={"file": ("d.csv", content)}, headers=auth_headers).json()
    spec = {**EXAMPLE_SPEC, "dataset": {"id": dataset["id"]}}
    job = client.post("/v1/jobs", json={"spec": spec}, headers=auth_headers).json()
    url = f"/v1/datasets/{dataset['id']}"
    refused = client.delete(url, headers=auth_headers)
    assert refused.status_code == 409 and job["id"] in refused.json()["detail"]
    set_result(app, job["id"], test_accuracy=0.5, val_loss=0.5)
    assert client.delete(url, headers=auth_headers).status_code == 204
    assert client.get(url, headers=auth_headers).status_code == 404
    assert list((Path(settings.resolved_artifacts_url) / "datasets").iterdir()) == []
    assert client.get(f"/v1/jobs/{job['id']}", headers=auth_headers).json()["status"] == "succeeded"
