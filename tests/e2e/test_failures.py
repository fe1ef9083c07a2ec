"""Jobs that raise fail with a reason a person can act on, and the same worker process takes the next job."""

from __future__ import annotations

import io
import os
import sys
import uuid
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from core.config import Settings
from core.db import make_engine, make_session_factory
from core.migrate import upgrade_database
from core.models import Dataset
from tests.e2e.conftest import Service
from tests.e2e.harness import DIVERGING_SPEC, IRIS_SPEC, WorkerProcess, submit, wait_for_status

pytestmark = pytest.mark.slow

DONE = {"succeeded", "failed", "cancelled"}
# Full-batch training of a wide network: one hidden activation is 200,000 x 2,048 floats (1.5 GiB).
MEMORY_HUNGRY_SPEC: dict[str, Any] = {
    "dataset": {"name": "moons", "samples": 200_000},
    "network": {"type": "mlp", "hidden_layers": [2048, 2048]},
    "training": {"epochs": 2, "batch_size": 200_000, "seed": 0},
}


def upload(service: Service, name: str, content: bytes, **data: str) -> str:
    response = service.client.post(
        "/v1/datasets", files={"file": (name, content)}, data=data, headers=service.headers
    )
    assert response.status_code == 201, response.text
    return str(response.json()["id"])


def stored_path(settings: Settings, dataset_id: str) -> Path:
    """Where the artifact store (a local folder here) keeps an upload's bytes."""
    engine = make_engine(settings.resolved_database_url)
    try:
        with make_session_factory(engine)() as session:
            uri = session.scalar(select(Dataset.uri).where(Dataset.id == dataset_id))
    finally:
        engine.dispose()
    assert uri is not None
    path = Path(settings.resolved_artifacts_url) / uri
    assert path.is_file(), path
    return path


def npz_bytes(rows: int = 60) -> bytes:
    buffer = io.BytesIO()
    rng = np.random.default_rng(0)
    np.savez(buffer, X=rng.normal(size=(rows, 3)).astype(np.float32), y=rng.integers(0, 2, rows))
    return buffer.getvalue()


def test_jobs_that_raise_fail_with_a_reason_and_the_same_worker_takes_the_next(service: Service) -> None:
    client, headers = service.client, service.headers
    # An upload that passed validation, whose stored bytes then rotted (same size, garbage content).
    rotten = upload(service, "rotten.npz", npz_bytes())
    path = stored_path(service.settings, rotten)
    path.write_bytes(np.random.default_rng(1).bytes(path.stat().st_size))
    # An upload whose file the artifact store lost.
    vanished_csv = b"a,b,label\n" + b"".join(f"{i},{i % 5},{i % 2}\n".encode() for i in range(40))
    vanished = upload(service, "vanished.csv", vanished_csv, target="label")
    stored_path(service.settings, vanished).unlink()

    failing = {
        "non-finite loss": (DIVERGING_SPEC, ["learning_rate"]),
        "corrupt upload": ({**IRIS_SPEC, "dataset": {"id": rotten}}, ["not a readable .npz file"]),
        "missing upload": (
            {**IRIS_SPEC, "dataset": {"id": vanished}},
            [vanished, "missing from the artifact store", "upload the dataset again"],
        ),
    }
    job_ids = {why: submit(client, headers, spec) for why, (spec, _) in failing.items()}
    next_id = submit(client, headers, IRIS_SPEC)

    workers = set()
    for why, (_, says) in failing.items():
        job = wait_for_status(client, headers, job_ids[why], DONE, timeout=60)
        assert job["status"] == "failed", (why, job)
        assert all(words in job["error"] for words in says), (why, job["error"])
        assert "Traceback" not in job["error"] and str(service.settings.data_dir) not in job["error"]
        workers.add(job["worker"])
    good = wait_for_status(client, headers, next_id, DONE, timeout=60)
    assert good["status"] == "succeeded", good
    assert workers == {good["worker"]}, "one worker process ran every job, failing ones included"
    assert service.worker.process.poll() is None, service.worker.output()
    # Training yields the CPU to an API or database on the same host (TRAINCTL_WORKER_NICE, default 10).
    assert os.getpriority(os.PRIO_PROCESS, service.worker.process.pid) == 10


def test_out_of_memory_fails_the_job_and_the_worker_takes_the_next(tmp_path: Path) -> None:
    """Real memory exhaustion: the worker's address space is capped (RLIMIT_AS) 1 GiB above its warm size."""
    from api.auth.service import create_key
    from api.main import create_app

    settings = Settings(
        _env_file=None,  # type: ignore[call-arg]
        data_dir=tmp_path / "var",
        database_url=f"sqlite:///{tmp_path / 'trainctl.db'}",
        artifacts_url=str(tmp_path / "artifacts"),
        default_queue=f"cpu-oom-{uuid.uuid4().hex[:8]}",
        max_job_memory=64 * 2**30,  # this test is about real exhaustion: the submit-time budget lets it pass
    )
    upgrade_database(settings.resolved_database_url)
    command = [sys.executable, "-m", "celery", "--app", "tests.e2e.memory_limited_worker:celery_app"]
    command += ["worker", "--queues", settings.default_queue, "--pool", "solo", "--concurrency", "1"]
    command += ["--loglevel", "INFO", "--without-gossip", "--without-mingle", "--hostname", "oom@%h"]
    env = {
        "TRAINCTL_TEST_MEMORY_MARGIN_MB": "1024",
        "TRAINCTL_WORKER_QUEUES": settings.default_queue,
        "TRAINCTL_WORKER_THREADS": "1",
        "OMP_NUM_THREADS": "1",
    }
    worker = WorkerProcess(settings, tmp_path / "worker.log", env=env, command=command)
    try:
        app = create_app(settings)
        with TestClient(app) as client:
            with app.state.session_factory() as session:
                headers = {"Authorization": f"Bearer {create_key(session, owner='alice')[1]}"}
            worker.wait_ready(settings)
            hungry_id = submit(client, headers, MEMORY_HUNGRY_SPEC)
            next_id = submit(client, headers, IRIS_SPEC)
            hungry = wait_for_status(client, headers, hungry_id, DONE, timeout=90)
            assert hungry["status"] == "failed", (hungry, worker.output())
            assert hungry["error"].startswith("out of memory"), hungry["error"]
            assert "batch_size" in hungry["error"], hungry["error"]
            good = wait_for_status(client, headers, next_id, DONE, timeout=60)
            assert good["status"] == "succeeded", (good, worker.output())
            assert good["worker"] == hungry["worker"], "the same worker process took the next job"
        assert "address space limited" in worker.output()
        assert worker.process.poll() is None, worker.output()
    finally:
        worker.stop()
