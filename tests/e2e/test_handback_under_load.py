"""SIGTERM while a sweep runs on both slots: every job is handed back within the grace, in any phase."""

from __future__ import annotations

import sys
import time
import uuid
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from core.config import Settings
from core.db import make_engine, make_session_factory
from core.migrate import upgrade_database
from core.models import EpochMetric
from tests.e2e.harness import WorkerProcess, job_status, wait_for
from trainctl.server import WORKER_STOP_GRACE_S

pytestmark = pytest.mark.slow

# Long enough (several seconds on a fast, idle CPU) that the jobs are still running when SIGTERM comes a
# second after their first epoch: at 20 epochs a faster engine finished them first.
BASE: dict[str, Any] = {
    "dataset": {"name": "moons", "samples": 2000},
    "network": {"type": "mlp", "hidden_layers": [32, 32]},
    "training": {"epochs": 100, "batch_size": 16, "seed": 0},
}


def slow_worker(settings: Settings, log: Path, validation_sleep: float) -> WorkerProcess:
    """Two jobs at once (prefork), each validation `validation_sleep` s longer."""
    command = [sys.executable, "-m", "celery", "--app", "tests.e2e.slow_validation_worker:celery_app"]
    command += ["worker", "--queues", settings.default_queue, "--pool", "prefork", "--concurrency", "2"]
    command += ["--loglevel", "INFO", "--without-gossip", "--without-mingle", "--hostname", "load@%h"]
    env = {
        "TRAINCTL_TEST_VALIDATION_SLEEP": str(validation_sleep),
        "TRAINCTL_WORKER_QUEUES": settings.default_queue,
        "TRAINCTL_WORKER_THREADS": "1",
        "OMP_NUM_THREADS": "1",
    }
    return WorkerProcess(settings, log, env=env, command=command)


# Two shapes: two jobs on the two slots. Two seeds of one shape: one replica group on one slot.
TWO_JOBS = {"grid": {"network.hidden_layers": [[32, 32], [32, 16]]}}
ONE_GROUP = {"grid": {}, "seeds": 2}


@pytest.mark.parametrize(
    ("validation_sleep", "sweep_shape"),
    [(0.0, TWO_JOBS), (120.0, TWO_JOBS), (0.0, ONE_GROUP)],
    ids=["between-steps", "in-a-long-validation", "a-replica-group-between-steps"],
)
def test_sigterm_hands_back_both_jobs_of_a_sweep_within_the_grace(
    tmp_path: Path, validation_sleep: float, sweep_shape: dict[str, Any]
) -> None:
    from api.auth.service import create_key
    from api.main import create_app

    settings = Settings(
        _env_file=None,  # type: ignore[call-arg]
        data_dir=tmp_path / "var",
        database_url=f"sqlite:///{tmp_path / 'trainctl.db'}",
        artifacts_url=str(tmp_path / "artifacts"),
        default_queue=f"cpu-load-{uuid.uuid4().hex[:8]}",
    )
    upgrade_database(settings.resolved_database_url)
    app = create_app(settings)
    first = slow_worker(settings, tmp_path / "first.log", validation_sleep)
    second: WorkerProcess | None = None
    try:
        with TestClient(app) as client:
            with app.state.session_factory() as session:
                headers = {"Authorization": f"Bearer {create_key(session, owner='alice')[1]}"}
            first.wait_ready(settings)
            body = {"name": "load", "base": BASE, **sweep_shape}
            sweep = client.post("/v1/sweeps", json=body, headers=headers)
            assert sweep.status_code == 202, sweep.text
            job_ids = [job["id"] for job in sweep.json()["jobs"]]

            def both_running() -> bool:
                jobs = [job_status(client, headers, job_id) for job_id in job_ids]
                return all(job["status"] == "running" for job in jobs) and (
                    validation_sleep > 0 or all(job["progress"]["epoch"] >= 1 for job in jobs)
                )

            wait_for(both_running, 90, first.output)
            time.sleep(1.0)  # well inside the phase
            started = time.monotonic()
            first.process.terminate()
            first.process.wait(WORKER_STOP_GRACE_S)
            took = time.monotonic() - started
            assert took < WORKER_STOP_GRACE_S, first.output()
            for job_id in job_ids:
                handed = job_status(client, headers, job_id)
                assert handed["status"] == "queued" and handed["attempts"] == 0, (handed, first.output())

            second = WorkerProcess(settings, tmp_path / "second.log", "--concurrency", "2")
            second.wait_ready(settings)
            for job_id in job_ids:
                wait_for(
                    lambda j=job_id: job_status(client, headers, j)["status"] == "succeeded",
                    120,
                    second.output,
                )
        engine = make_engine(settings.resolved_database_url)
        with make_session_factory(engine)() as session:
            for job_id in job_ids:
                epochs = session.scalars(select(EpochMetric.epoch).where(EpochMetric.job_id == job_id)).all()
                assert sorted(epochs) == list(range(1, BASE["training"]["epochs"] + 1)), "every epoch once"
        engine.dispose()
    finally:
        first.stop()
        if second is not None:
            second.stop()
