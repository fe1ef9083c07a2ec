"""Health, Prometheus metrics, spec validation, OpenAPI, database outages and the import rules."""

from __future__ import annotations

import logging
import subprocess
import sys
import time
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from api.auth.service import create_key
from api.main import create_app
from core.config import Settings
from core.db import utcnow
from core.models import Job, WorkerBeat
from tests.api.conftest import PROBLEM
from training.spec import EXAMPLE_SPEC

ROOT = Path(__file__).resolve().parents[2]


def test_health_reports_database_broker_and_recent_workers(app: FastAPI, client: TestClient) -> None:
    with app.state.session_factory() as session:
        session.add(WorkerBeat(name="cpu-0@here", device="cpu", queues="cpu", last_seen=utcnow()))
        session.add(
            WorkerBeat(name="gone@there", device="cpu", queues="cpu", last_seen=utcnow() - timedelta(hours=1))
        )
        session.commit()
    response = client.get("/v1/health")  # no key needed
    assert response.status_code == 200
    report = response.json()
    assert report["database"]["ok"] and report["broker"]["ok"], report
    assert report["status"] == "ok"
    assert [worker["name"] for worker in report["workers"]] == ["cpu-0@here"]
    assert report["workers"][0]["queues"] == ["cpu"]


def test_database_outage_is_503_with_retry_after(tmp_path: Path) -> None:
    # Nothing listens on port 1: every connection is refused, as during a database restart.
    settings = Settings(
        _env_file=None,  # type: ignore[call-arg]
        data_dir=tmp_path,
        database_url="postgresql+psycopg://postgres@127.0.0.1:1/none?connect_timeout=2",
    )
    with TestClient(create_app(settings)) as client:
        health = client.get("/v1/health")
        assert health.status_code == 503 and health.headers["retry-after"]
        assert health.json()["status"] == "unavailable"
        jobs = client.get("/v1/jobs", headers={"Authorization": "Bearer tc_whatever"})
        assert jobs.status_code == 503 and jobs.headers["content-type"].startswith(PROBLEM)
        assert jobs.headers["retry-after"]
        metrics = client.get("/metrics")
        assert metrics.status_code == 200 and "trainctl_database_up 0.0" in metrics.text


def test_prometheus_metrics(
    client: TestClient,
    auth_headers: dict[str, str],
    submit: Callable[..., dict[str, Any]],
    finish_job: Callable[..., None],
) -> None:
    submit()
    finish_job(submit()["id"], epochs=3)
    client.get("/v1/jobs/job_x", headers=auth_headers)
    text = client.get("/metrics").text  # no key needed
    assert 'trainctl_jobs{status="queued"} 1.0' in text
    assert 'trainctl_jobs{status="succeeded"} 1.0' in text
    assert "trainctl_queue_depth 1.0" in text
    assert "trainctl_epochs_trained 3.0" in text
    assert 'route="/v1/jobs",status="202"' in text
    assert 'route="/v1/jobs/{job_id}",status="404"' in text  # templates, not ids: bounded labels


def test_apps_have_separate_registries(settings: Settings) -> None:
    first, second = create_app(settings), create_app(settings)
    assert first.state.metrics_registry is not second.state.metrics_registry


def test_validate_reports_and_stores_nothing(
    client: TestClient, auth_headers: dict[str, str], count_rows: Callable[[type], int]
) -> None:
    spec = {**EXAMPLE_SPEC, "activation": "tansig", "initialization": "he_normal"}
    response = client.post("/v1/specs/validate", json={"spec": spec}, headers=auth_headers)
    assert response.status_code == 200, response.text
    report = response.json()
    assert report["spec"]["activation"] == "tanh"  # aliases normalized
    assert report["spec"]["training"]["batch_size"] == 16
    assert (report["features"], report["outputs"], report["parameters"]) == (4, 3, 4 * 16 + 16 + 16 * 3 + 3)
    assert [warning["code"] for warning in report["warnings"]] == ["he_with_sigmoid"]
    assert count_rows(Job) == 0


def test_openapi_documents_every_route(client: TestClient) -> None:
    schema = client.get("/openapi.json").json()
    assert schema["components"]["securitySchemes"]["ApiKey"]["scheme"] == "bearer"
    for path, operations in schema["paths"].items():
        for method, operation in operations.items():
            assert operation.get("summary") and operation.get("description"), (method, path)
            assert operation.get("tags"), (method, path)
            if path.startswith("/v1/") and path != "/v1/health":
                assert operation.get("security"), (method, path)
                assert PROBLEM in operation["responses"]["401"]["content"], (method, path)
    post_jobs = schema["paths"]["/v1/jobs"]["post"]
    assert "Idempotency-Key" in {parameter["name"] for parameter in post_jobs["parameters"]}


def test_cors_is_off_by_default_and_follows_the_allow_list(settings: Settings) -> None:
    preflight = {"Origin": "https://ui.example", "Access-Control-Request-Method": "GET"}
    with TestClient(create_app(settings)) as client:
        assert "access-control-allow-origin" not in client.options("/v1/jobs", headers=preflight).headers
    settings.cors_origins = ["https://ui.example"]
    with TestClient(create_app(settings)) as client:
        allowed = client.options("/v1/jobs", headers=preflight)
        assert allowed.headers["access-control-allow-origin"] == "https://ui.example"


def test_api_imports_no_torch() -> None:
    code = (
        "import sys, api.main, api.jobs.outputs, api.jobs.service, core.migrate; "
        "assert 'torch' not in sys.modules, 'api imported torch'; "
        "assert not any(name == 'worker' or name.startswith('worker.') for name in sys.modules)"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr


MNIST1D_CNN = {"type": "cnn", "channels": [25] * 3, "kernel_size": [5, 3, 3], "stride": 2, "padding": 1}
MNIST1D_CNN |= {"pool": "none", "hidden_layers": []}


@pytest.mark.parametrize(
    "overrides",
    [
        {},
        {"dataset": {"name": "digits", "as_images": True}, "network": {"type": "cnn", "channels": [4, 8]}},
        {
            "dataset": {"name": "adding", "length": 20},
            "network": {"type": "rnn", "cell": "lstm", "hidden_size": 6, "layers": 2},
            "activation": "tanh",
        },
        {"dataset": {"name": "parity", "length": 10}, "network": {"hidden_layers": [5]}},
        {"dataset": {"name": "cifar10"}, "network": {"hidden_layers": [32]}},
        {
            "dataset": {"name": "fashion_mnist", "as_images": True},
            "network": {"type": "cnn", "channels": [4, 8], "kernel_size": [5, 3], "stride": 2, "padding": 1},
        },
        {
            "dataset": {"name": "mnist1d", "as_sequence": True},
            "network": MNIST1D_CNN,
        },
        {
            "dataset": {"name": "mnist1d", "as_sequence": True},
            "network": {
                "type": "rnn",
                "cell": "gru",
                "hidden_size": 6,
                "bidirectional": True,
                "readout": "all_steps",
            },
        },
    ],
)
def test_validate_counts_parameters_like_torch(
    client: TestClient, auth_headers: dict[str, str], overrides: dict[str, Any]
) -> None:
    network = pytest.importorskip("training.network")
    from training.spec import JobSpec, example_shape

    spec = {**EXAMPLE_SPEC, **overrides}
    response = client.post("/v1/specs/validate", json={"spec": spec}, headers=auth_headers)
    assert response.status_code == 200, response.text
    report = response.json()
    job = JobSpec.model_validate(spec)
    model = network.build_network(job, example_shape(job.dataset), report["outputs"])
    assert report["parameters"] == sum(parameter.numel() for parameter in model.parameters())


def test_benchmarks_validate_without_their_files(
    client: TestClient, auth_headers: dict[str, str], settings: Settings
) -> None:
    spec = {**EXAMPLE_SPEC, "dataset": {"name": "mnist", "as_images": True}, "network": {"type": "cnn"}}
    response = client.post("/v1/specs/validate", json={"spec": spec}, headers=auth_headers)
    assert response.status_code == 200, response.text
    assert (response.json()["features"], response.json()["outputs"]) == (784, 10)
    assert not (settings.resolved_dataset_cache / "mnist").exists()  # shapes are known: nothing fetched
    shrunk = {**spec, "network": {"type": "cnn", "channels": [4] * 6}}  # 28 -> 14 -> ... -> 0
    response = client.post("/v1/specs/validate", json={"spec": shrunk}, headers=auth_headers)
    assert response.status_code == 422 and "leaves nothing" in response.text, response.text


def test_broker_outage_degrades_health_and_submission_still_stores_the_job(settings: Settings) -> None:
    # Nothing listens on port 1: the broker is down. The job is stored; the sweep publishes it later.
    settings.broker_url = "redis://127.0.0.1:1/0"
    app = create_app(settings)
    with TestClient(app) as client:
        started = time.monotonic()
        report = client.get("/v1/health")
        assert report.status_code == 200
        assert report.json()["status"] == "degraded" and not report.json()["broker"]["ok"]
        assert time.monotonic() - started < 10

        with app.state.session_factory() as session:
            _key, secret = create_key(session, owner="erin")
        started = time.monotonic()
        response = client.post(
            "/v1/jobs", json={"spec": EXAMPLE_SPEC}, headers={"Authorization": f"Bearer {secret}"}
        )
        assert response.status_code == 202 and response.json()["status"] == "queued"
        assert time.monotonic() - started < 10
    with app.state.session_factory() as session:
        assert session.get(Job, response.json()["id"]) is not None


def test_no_secret_or_spec_content_in_logs(
    client: TestClient, api_key: str, auth_headers: dict[str, str], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="api")
    spec = {**EXAMPLE_SPEC, "initialization": {"scheme": "normal", "std": 0.0123456}}
    assert client.post("/v1/jobs", json={"spec": spec}, headers=auth_headers).status_code == 202
    assert (
        client.get("/v1/jobs", headers={"Authorization": "Bearer tc_wrong-secret-value"}).status_code == 401
    )
    bad = {**EXAMPLE_SPEC, "optimizer": {"name": "sgd", "learning_rate": -0.0123456}}
    assert client.post("/v1/jobs", json={"spec": bad}, headers=auth_headers).status_code == 422
    logged = caplog.text
    assert api_key not in logged and "tc_wrong-secret-value" not in logged
    assert "0.0123456" not in logged
