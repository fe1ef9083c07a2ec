"""Bad input gets a problem+json that names the field, and nothing is stored."""

from __future__ import annotations

import copy
import io
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient

from core.config import Settings
from core.models import Dataset, Job
from tests.api.conftest import PROBLEM
from training.spec import EXAMPLE_SPEC


def spec_with(path: str, value: Any) -> dict[str, Any]:
    """The example spec with one dotted path replaced."""
    spec = copy.deepcopy(EXAMPLE_SPEC)
    *parents, last = path.split(".")
    node = spec
    for part in parents:
        node = node.setdefault(part, {})
    node[last] = value
    return spec


def assert_problem(response: Any, status: int, field: str, *, says: str = "") -> None:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith(PROBLEM)
    body = response.json()
    assert body["status"] == status and body["title"] and body["type"].startswith("urn:trainctl:problem:")
    fields = [error["field"] for error in body.get("errors", [])]
    assert field in fields, body
    assert says.lower() in body["detail"].lower(), body


@pytest.mark.parametrize(
    ("path", "value", "field", "says"),
    [
        (
            "optimizer",
            {"name": "adam", "learnin_rate": 0.1},
            "spec.optimizer",
            "did you mean 'learning_rate'",
        ),
        ("training.epochs", "ten", "spec.training.epochs", "integer"),
        (
            "optimizer",
            {"name": "sgd", "learning_rate": -0.1},
            "spec.optimizer.learning_rate",
            "greater than 0",
        ),
        ("training.epochs", 10**9, "spec.training.epochs", "less than or equal"),
        ("network.hidden_layers", [10**6], "spec.network.hidden_layers.0", "less than or equal"),
        ("activation", "softsign", "spec.activation", "unknown activation"),
        ("dataset", {"name": "imagenet"}, "spec.dataset", "dataset needs a name"),
        ("trainig", {"epochs": 3}, "spec", "did you mean 'training'"),
    ],
)
def test_invalid_spec_is_refused_naming_the_field(
    client: TestClient,
    auth_headers: dict[str, str],
    count_rows: Callable[[type], int],
    path: str,
    value: Any,
    field: str,
    says: str,
) -> None:
    for url in ("/v1/jobs", "/v1/specs/validate"):
        response = client.post(url, json={"spec": spec_with(path, value)}, headers=auth_headers)
        assert_problem(response, 422, field, says=says)
    assert count_rows(Job) == 0


def test_every_problem_of_a_spec_is_reported_at_once(
    client: TestClient, auth_headers: dict[str, str], count_rows: Callable[[type], int]
) -> None:
    spec = {**EXAMPLE_SPEC, "colour": "red", "optimizer": {"learning_rate": -1}, "training": {"epochs": 0}}
    for url in ("/v1/jobs", "/v1/specs/validate"):
        response = client.post(url, json={"spec": spec}, headers=auth_headers)
        assert response.status_code == 422
        errors = {error["field"]: error["message"] for error in response.json()["errors"]}
        assert "unknown key 'colour'" in errors["spec"]  # an unknown key no longer hides the others
        assert "greater than 0" in errors["spec.optimizer.learning_rate"]
        assert "greater than or equal to 1" in errors["spec.training.epochs"]
    # service limits likewise: both the epochs and the network over their limits
    spec = {**EXAMPLE_SPEC, "network": {"hidden_layers": [60_000, 60_000]}, "training": {"epochs": 50_000}}
    response = client.post("/v1/jobs", json={"spec": spec}, headers=auth_headers)
    assert response.status_code == 422
    assert {error["field"] for error in response.json()["errors"]} == {"spec.training.epochs", "spec.network"}
    assert count_rows(Job) == 0


@pytest.mark.parametrize(
    ("path", "value", "field", "says"),
    [
        ("training.epochs", 50_000, "spec.training.epochs", "limit of 10000"),
        ("network.hidden_layers", [60_000, 60_000], "spec.network", "limit is 10,000,000"),
        ("dataset", {"id": "ds_missing"}, "spec.dataset.id", "no uploaded dataset"),
        ("dataset", {"path": "/etc/passwd.csv"}, "spec.dataset.path", "does not read files"),
    ],
)
def test_service_limits_and_datasets_are_checked_before_storing(
    client: TestClient,
    auth_headers: dict[str, str],
    count_rows: Callable[[type], int],
    path: str,
    value: Any,
    field: str,
    says: str,
) -> None:
    for url in ("/v1/jobs", "/v1/specs/validate"):
        response = client.post(url, json={"spec": spec_with(path, value)}, headers=auth_headers)
        assert_problem(response, 422, field, says=says)
    assert count_rows(Job) == 0


def test_body_that_is_not_json(client: TestClient, auth_headers: dict[str, str], count_rows: Any) -> None:
    response = client.post(
        "/v1/jobs", content=b"{not json", headers={**auth_headers, "Content-Type": "application/json"}
    )
    assert_problem(response, 422, "body")
    assert count_rows(Job) == 0


def test_unknown_top_level_key(client: TestClient, auth_headers: dict[str, str], count_rows: Any) -> None:
    response = client.post("/v1/jobs", json={"spec": EXAMPLE_SPEC, "priority": 1}, headers=auth_headers)
    assert_problem(response, 422, "priority")
    assert count_rows(Job) == 0


def _stored_uploads(settings: Settings) -> list[Path]:
    folder = Path(settings.resolved_artifacts_url) / "datasets"
    return list(folder.glob("*")) if folder.exists() else []


@pytest.mark.parametrize(
    ("filename", "content", "says"),
    [
        ("data.csv", b"a,b\n1,2\n", "at least 10 rows"),
        ("data.csv", b"a,b,label\n" + b"1,x,0\n" * 20, "numeric"),
        ("data.csv", b"\xff\xfe\x00garbage", "utf-8"),
        ("data.npz", b"PK\x03\x04 this is not a zip archive", "not a readable .npz"),
        ("data.csv", b"", "empty"),
    ],
)
def test_malformed_upload_is_refused(
    client: TestClient,
    auth_headers: dict[str, str],
    settings: Settings,
    count_rows: Any,
    filename: str,
    content: bytes,
    says: str,
) -> None:
    response = client.post("/v1/datasets", files={"file": (filename, content)}, headers=auth_headers)
    assert_problem(response, 422, "file", says=says)
    assert count_rows(Dataset) == 0
    assert _stored_uploads(settings) == []


def test_pickled_npz_is_refused(client: TestClient, auth_headers: dict[str, str], count_rows: Any) -> None:
    buffer = io.BytesIO()
    np.savez(buffer, X=np.array([{"a": 1}] * 20, dtype=object), y=np.zeros(20))
    response = client.post("/v1/datasets", files={"file": ("x.npz", buffer.getvalue())}, headers=auth_headers)
    assert_problem(response, 422, "file", says="object arrays are refused")
    assert count_rows(Dataset) == 0


def _csv(rows: int) -> bytes:
    return b"a,b,label\n" + b"".join(f"{i},{i % 7},{i % 2}\n".encode() for i in range(rows))


@pytest.fixture
def small_limits(settings: Settings) -> Settings:
    settings.max_upload_bytes = 2_000
    settings.max_dataset_rows = 50
    settings.max_request_bytes = 20_000
    return settings


def test_oversize_upload_is_413_before_parsing(
    small_limits: Settings, client: TestClient, auth_headers: dict[str, str], count_rows: Any
) -> None:
    response = client.post("/v1/datasets", files={"file": ("big.csv", _csv(300))}, headers=auth_headers)
    assert response.status_code == 413 and response.headers["content-type"].startswith(PROBLEM)
    assert "2,000 bytes" in response.json()["detail"]
    assert count_rows(Dataset) == 0
    assert _stored_uploads(small_limits) == []


def test_too_many_rows_is_422(
    small_limits: Settings, client: TestClient, auth_headers: dict[str, str]
) -> None:
    response = client.post("/v1/datasets", files={"file": ("rows.csv", _csv(80))}, headers=auth_headers)
    assert_problem(response, 422, "file", says="over the limit of 50")
    assert _stored_uploads(small_limits) == []


def test_request_body_over_the_limit_is_413(
    small_limits: Settings, client: TestClient, auth_headers: dict[str, str], count_rows: Any
) -> None:
    response = client.post(
        "/v1/jobs", json={"spec": EXAMPLE_SPEC, "name": "x" * 30_000}, headers=auth_headers
    )
    assert response.status_code == 413 and response.headers["content-type"].startswith(PROBLEM)
    assert "20000 bytes" in response.json()["detail"]

    def chunks() -> Any:
        yield b'{"spec": {}, "name": "'
        for _ in range(30):
            yield b"x" * 1000
        yield b'"}'

    chunked = client.post(
        "/v1/jobs", content=chunks(), headers={**auth_headers, "Content-Type": "application/json"}
    )
    assert chunked.status_code == 413
    assert count_rows(Job) == 0


def test_bad_query_parameters(client: TestClient, auth_headers: dict[str, str]) -> None:
    assert_problem(client.get("/v1/jobs?limit=1000", headers=auth_headers), 422, "limit")
    assert_problem(client.get("/v1/jobs?status=sleeping", headers=auth_headers), 422, "status")
    assert_problem(client.get("/v1/jobs?cursor=garbage", headers=auth_headers), 422, "cursor")


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"name": "a\x00b"}, "name"),
        ({"tags": ["ok", "bad\x00"]}, "tags.1"),
        ({"name": "x" * 201}, "name"),
        ({"tags": ["t"] * 21}, "tags"),
        ({"spec": spec_with("training.seed", 2**70)}, "spec.training.seed"),
    ],
)
def test_bad_name_and_tags(
    client: TestClient, auth_headers: dict[str, str], count_rows: Any, body: dict[str, Any], field: str
) -> None:
    response = client.post("/v1/jobs", json={"spec": EXAMPLE_SPEC, **body}, headers=auth_headers)
    assert_problem(response, 422, field)
    assert count_rows(Job) == 0


@pytest.mark.parametrize(
    "url",
    [
        "/v1/jobs?tag=%00",
        "/v1/jobs?name=a%00",
        "/v1/jobs/job%00x",
        "/v1/jobs/job_x/metrics?since_epoch=99999999999999999999999",
        "/v1/datasets/ds%00",
        "/v1/jobs?cursor=WyIyMDI2IiwgImpvYlx1MDAwMCJd",
    ],
)
def test_odd_values_in_urls_are_client_errors(
    client: TestClient, auth_headers: dict[str, str], url: str
) -> None:
    response = client.get(url, headers=auth_headers)
    assert 400 <= response.status_code < 500, response.text
    assert response.headers["content-type"].startswith(PROBLEM) or response.status_code == 200


def test_dataset_id_with_nul_is_a_client_error(
    client: TestClient, auth_headers: dict[str, str], count_rows: Any
) -> None:
    response = client.post(
        "/v1/jobs", json={"spec": spec_with("dataset", {"id": "ds\x00"})}, headers=auth_headers
    )
    assert response.status_code == 422 and response.headers["content-type"].startswith(PROBLEM)
    assert count_rows(Job) == 0


def test_queued_jobs_per_owner_limit(
    settings: Settings, client: TestClient, auth_headers: dict[str, str], count_rows: Any
) -> None:
    settings.max_queued_jobs_per_owner = 2
    for _ in range(2):
        assert client.post("/v1/jobs", json={"spec": EXAMPLE_SPEC}, headers=auth_headers).status_code == 202
    response = client.post("/v1/jobs", json={"spec": EXAMPLE_SPEC}, headers=auth_headers)
    assert response.status_code == 429 and response.headers["content-type"].startswith(PROBLEM)
    assert response.headers["retry-after"] and "limit is 2" in response.json()["detail"]
    assert count_rows(Job) == 2


def test_body_that_is_not_utf8_is_422_not_400(
    client: TestClient, auth_headers: dict[str, str], count_rows: Any
) -> None:
    # Found by schemathesis: FastAPI answered an undocumented 400 for bytes that are not UTF-8 JSON.
    for url in ("/v1/jobs", "/v1/specs/validate", "/v1/sweeps"):
        response = client.post(
            url, content=b'{"spec": "\x81"}', headers={**auth_headers, "Content-Type": "application/json"}
        )
        assert_problem(response, 422, "body")
    assert count_rows(Job) == 0


def test_predict_from_a_damaged_checkpoint_is_409_not_500(
    client: TestClient, auth_headers: dict[str, str], submit: Any, finish_job: Any
) -> None:
    # Found by schemathesis: a checkpoint file that is not safetensors raised a 500.
    job_id = submit()["id"]
    finish_job(job_id, checkpoint=b"not a safetensors file")
    response = client.post(
        f"/v1/jobs/{job_id}/predict", json={"inputs": [[1, 2, 3, 4]]}, headers=auth_headers
    )
    assert response.status_code == 409 and response.headers["content-type"].startswith(PROBLEM)
    assert "cannot be read" in response.json()["detail"]
