"""SIGTERM to a worker mid-job: it checkpoints, hands the job back, and another worker resumes it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from core.config import Settings
from core.db import make_engine, make_session_factory
from core.migrate import upgrade_database
from core.models import EpochMetric
from tests.e2e.harness import WorkerProcess, job_status, submit, wait_for, wait_for_status

pytestmark = pytest.mark.slow

HANDBACK_SPEC: dict[str, Any] = {
    "dataset": {"name": "moons", "samples": 8000},
    "network": {"type": "mlp", "hidden_layers": [32, 32]},
    "training": {"epochs": 8, "batch_size": 16, "seed": 0},
}


@pytest.mark.parametrize("concurrency", [1, 2], ids=["solo", "prefork"])
def test_sigterm_hands_the_job_back_and_it_resumes(tmp_path: Path, concurrency: int) -> None:
    from api.auth.service import create_key
    from api.main import create_app

    settings = Settings(
        _env_file=None,  # type: ignore[call-arg]
        data_dir=tmp_path / "var",
        database_url=f"sqlite:///{tmp_path / 'trainctl.db'}",
        artifacts_url=str(tmp_path / "artifacts"),
        default_queue="cpu-handback",
    )
    upgrade_database(settings.resolved_database_url)
    app = create_app(settings)
    first = WorkerProcess(settings, tmp_path / "first.log", "--concurrency", str(concurrency))
    second: WorkerProcess | None = None
    try:
        with TestClient(app) as client:
            with app.state.session_factory() as session:
                headers = {"Authorization": f"Bearer {create_key(session, owner='alice')[1]}"}
            first.wait_ready(settings)
            job_id = submit(client, headers, HANDBACK_SPEC)
            wait_for(lambda: job_status(client, headers, job_id)["progress"]["epoch"] >= 2, 60, first.output)
            assert first.stop(timeout=20) == 0, first.output()

            handed = job_status(client, headers, job_id)
            assert handed["status"] == "queued", (handed, first.output())
            # A hand-back is not a lost attempt: it does not count toward max_attempts.
            assert handed["attempts"] == 0 and handed["progress"]["epoch"] >= 2

            second = WorkerProcess(settings, tmp_path / "second.log")
            second.wait_ready(settings)
            job = wait_for_status(client, headers, job_id, {"succeeded", "failed", "cancelled"}, timeout=90)
            assert job["status"] == "succeeded", (job, second.output())
            assert job["attempts"] == 1 and "resumes from its last checkpoint" in second.output()

        engine = make_engine(settings.resolved_database_url)
        with make_session_factory(engine)() as session:
            epochs = session.scalars(select(EpochMetric.epoch).where(EpochMetric.job_id == job_id)).all()
        engine.dispose()
        assert sorted(epochs) == list(range(1, 9)), "no epoch missing or duplicated"
    finally:
        first.stop()
        if second is not None:
            second.stop()
