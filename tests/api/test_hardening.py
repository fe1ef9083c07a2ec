"""Small leaks and sharp edges: health job ids, CSV formulas, 405 Allow, strict counts, echoed values."""

from __future__ import annotations

import csv
import io
from collections.abc import Callable
from typing import Any

from fastapi import FastAPI
from fastapi.testclient import TestClient

from api.csv_export import neutralize
from core.db import utcnow
from core.models import WorkerBeat
from tests.api.test_bad_input import spec_with
from training.spec import EXAMPLE_SPEC


def test_health_shows_a_running_job_id_to_its_owner_only(
    app: FastAPI,
    client: TestClient,
    auth_headers: dict[str, str],
    other_headers: dict[str, str],
    submit: Callable[..., dict[str, Any]],
) -> None:
    job_id = submit()["id"]  # alice's
    with app.state.session_factory() as session:
        session.add(
            WorkerBeat(
                name="cpu-0@here", device="cpu", queues="cpu", current_job_id=job_id, last_seen=utcnow()
            )
        )
        session.commit()

    def shown(headers: dict[str, str]) -> Any:
        response = client.get("/v1/health", headers=headers)
        assert response.status_code == 200, response.text
        return response.json()["workers"][0]["current_job_id"]

    assert shown({}) is None
    assert shown({"Authorization": "Bearer tc_not_a_key"}) is None
    assert shown(other_headers) is None
    assert shown(auth_headers) == job_id


def test_csv_exports_neutralize_cells_a_spreadsheet_would_run(
    client: TestClient,
    auth_headers: dict[str, str],
    submit: Callable[..., dict[str, Any]],
    finish_job: Callable[..., None],
) -> None:
    names = ["=cmd|' /C calc'!A0", "+1+1", "-2+3", "@SUM(A1)", "plain"]
    ids = [submit(name=name)["id"] for name in names]
    for job_id in ids:
        finish_job(job_id)
    response = client.get(f"/v1/compare?jobs={','.join(ids)}&format=csv", headers=auth_headers)
    assert response.status_code == 200, response.text
    rows = list(csv.DictReader(io.StringIO(response.text)))
    assert [row["name"] for row in rows] == ["'=cmd|' /C calc'!A0", "'+1+1", "'-2+3", "'@SUM(A1)", "plain"]
    assert float(rows[0]["best.val_loss"]) == 0.4  # numbers stay numbers, negative ones included
    assert neutralize(-0.5) == -0.5 and neutralize("-0.5") == "'-0.5"


def test_a_405_lists_every_method_the_path_allows(client: TestClient, auth_headers: dict[str, str]) -> None:
    for method, path, allowed in [
        ("PUT", "/v1/jobs", "GET, POST"),
        ("PUT", "/v1/jobs/job_1", "GET, PATCH, DELETE"),
        ("POST", "/v1/health", "GET"),
    ]:
        response = client.request(method, path, headers=auth_headers)
        assert response.status_code == 405 and response.headers["allow"] == allowed, (path, response.headers)


def test_booleans_are_not_counts(client: TestClient, auth_headers: dict[str, str]) -> None:
    for path, value in [
        ("training.diagnostics_every", False),
        ("training.epochs", True),
        ("network.hidden_layers", [True]),
    ]:
        response = client.post("/v1/jobs", json={"spec": spec_with(path, value)}, headers=auth_headers)
        fields = [error["field"] for error in response.json().get("errors", [])]
        assert response.status_code == 422 and any(field.startswith(f"spec.{path}") for field in fields), (
            response.text
        )


def test_a_huge_bad_value_is_not_echoed_back_in_full(
    client: TestClient, auth_headers: dict[str, str]
) -> None:
    huge = "x" * 5_000_000
    sweep = {"name": "huge", "base": EXAMPLE_SPEC, "grid": {"activation": [huge]}}
    for path, body in [("/v1/sweeps", sweep), ("/v1/jobs", {"spec": spec_with("activation", huge)})]:
        response = client.post(path, json=body, headers=auth_headers)
        assert response.status_code == 422, response.text[:500]
        assert len(response.content) < 20_000 and "more characters" in response.text, path
