"""Checkpoints on S3-compatible storage: a worker process writes them, the API streams them back."""

from __future__ import annotations

import socket
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from core.config import Settings
from core.migrate import upgrade_database
from core.models import Job
from tests.e2e.harness import IRIS_SPEC, WorkerProcess, submit, wait_for_status

pytestmark = pytest.mark.slow
BUCKET = "trainctl-artifacts"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture
def s3_endpoint(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """A local S3-compatible server (moto in server mode) with an empty bucket; credentials in the env."""
    import boto3
    import fsspec.config
    from moto.server import ThreadedMotoServer

    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    endpoint = f"http://127.0.0.1:{port}"
    for name, value in {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_ENDPOINT_URL": endpoint,
        "FSSPEC_S3_ENDPOINT_URL": endpoint,  # read by fsspec at import: for the worker process
    }.items():
        monkeypatch.setenv(name, value)
    # This process imported fsspec already: give it the endpoint directly.
    monkeypatch.setitem(fsspec.config.conf, "s3", {"endpoint_url": endpoint})
    boto3.client("s3", endpoint_url=endpoint).create_bucket(Bucket=BUCKET)
    try:
        yield endpoint
    finally:
        server.stop()


def test_worker_writes_checkpoints_to_s3_and_api_streams_them(s3_endpoint: str, tmp_path: Path) -> None:
    import boto3
    import s3fs

    from api.auth.service import create_key
    from api.main import create_app

    s3fs.S3FileSystem.clear_instance_cache()
    prefix = f"run-{uuid.uuid4().hex[:8]}"
    settings = Settings(
        _env_file=None,  # type: ignore[call-arg]
        data_dir=tmp_path / "var",
        database_url=f"sqlite:///{tmp_path / 'trainctl.db'}",
        artifacts_url=f"s3://{BUCKET}/{prefix}",
        default_queue=f"cpu-{uuid.uuid4().hex[:8]}",
    )
    upgrade_database(settings.resolved_database_url)
    worker = WorkerProcess(settings, tmp_path / "worker.log")
    try:
        app = create_app(settings)
        with TestClient(app) as client:
            with app.state.session_factory() as session:
                _row, secret = create_key(session, owner="alice")
            headers = {"Authorization": f"Bearer {secret}"}
            worker.wait_ready(settings)
            job_id = submit(client, headers, IRIS_SPEC)
            job = wait_for_status(client, headers, job_id, {"succeeded", "failed", "cancelled"}, timeout=60)
            assert job["status"] == "succeeded", (job, worker.output())

            listing: Any = boto3.client("s3", endpoint_url=s3_endpoint).list_objects_v2(
                Bucket=BUCKET, Prefix=f"{prefix}/jobs/{job_id}/"
            )
            keys = {item["Key"] for item in listing.get("Contents", [])}
            # Each attempt uploads under its own name; the job's (only) attempt's files are the promoted ones.
            with app.state.session_factory() as session:
                attempt = session.scalar(select(Job.attempt).where(Job.id == job_id))
            assert f"{prefix}/jobs/{job_id}/attempts/{attempt}/best.safetensors" in keys, keys

            download = client.get(f"/v1/jobs/{job_id}/checkpoints/best", headers=headers)
            assert download.status_code == 200
            path = tmp_path / "best.safetensors"
            path.write_bytes(download.content)
            import training

            flower = [[5.1, 3.5, 1.4, 0.2]]
            remote = client.post(f"/v1/jobs/{job_id}/predict", json={"inputs": flower}, headers=headers)
            assert remote.status_code == 200, remote.text
            assert training.load_model(path).predict(flower)["classes"] == remote.json()["classes"]
    finally:
        worker.stop()
