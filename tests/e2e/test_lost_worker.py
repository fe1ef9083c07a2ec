"""A worker killed mid-job: the beat-scheduled reaper re-queues the job and another worker resumes it."""

from __future__ import annotations

import signal
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from core.db import make_engine, make_session_factory
from core.models import EpochMetric
from tests.e2e.harness import WorkerProcess, job_status, reaping_settings, submit, wait_for, wait_for_status
from tests.e2e.test_handback import HANDBACK_SPEC

pytestmark = pytest.mark.slow


def test_killed_worker_job_is_requeued_by_the_reaper_and_resumed(tmp_path: Path) -> None:
    from api.auth.service import create_key
    from api.main import create_app

    settings = reaping_settings(tmp_path, "cpu-lost")
    app = create_app(settings)
    reaper = WorkerProcess(settings, tmp_path / "reaper.log", "--queues", "maintenance", "--beat")
    first = WorkerProcess(settings, tmp_path / "first.log")
    second: WorkerProcess | None = None
    try:
        with TestClient(app) as client:
            with app.state.session_factory() as session:
                headers = {"Authorization": f"Bearer {create_key(session, owner='alice')[1]}"}
            first.wait_ready(settings)
            job_id = submit(client, headers, HANDBACK_SPEC)
            wait_for(lambda: job_status(client, headers, job_id)["progress"]["epoch"] >= 2, 60, first.output)
            first.process.send_signal(signal.SIGKILL)
            first.process.wait()

            second = WorkerProcess(settings, tmp_path / "second.log")
            job = wait_for_status(client, headers, job_id, {"succeeded", "failed", "cancelled"}, timeout=120)
            assert job["status"] == "succeeded", (job, second.output(), reaper.output())
            assert job["attempts"] == 2 and "resumes from its last checkpoint" in second.output()
        engine = make_engine(settings.resolved_database_url)
        with make_session_factory(engine)() as session:
            epochs = session.scalars(select(EpochMetric.epoch).where(EpochMetric.job_id == job_id)).all()
        engine.dispose()
        assert sorted(epochs) == list(range(1, 9)), "no epoch missing or duplicated"
        assert_same_as_an_uninterrupted_run(job["result"], tmp_path / "straight")
    finally:
        for process in (reaper, first, second):
            if process is not None:
                process.stop()


def assert_same_as_an_uninterrupted_run(result: dict[str, Any], out_dir: Path) -> None:
    """The resumed job's final and test metrics equal those of the same spec trained without a stop."""
    import torch

    import training
    from training.spec import JobSpec

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as the worker trains (--threads 1): the same arithmetic, bit for bit
    try:
        straight = training.fit(JobSpec.model_validate(HANDBACK_SPEC), out_dir=out_dir).model_dump(
            mode="json"
        )
    finally:
        torch.set_num_threads(threads)
    timing = {"seconds", "samples_per_second"}
    assert {k: v for k, v in result["final"].items() if k not in timing} == {
        k: v for k, v in straight["final"].items() if k not in timing
    }
    assert result["test"] == straight["test"] and result["best_epoch"] == straight["best_epoch"]
