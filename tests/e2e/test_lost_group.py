"""A worker killed while it trains a replica group: the reaper re-queues the jobs, the first message back
brings its group mates, and the group resumes from its replicas' checkpoints exactly."""

from __future__ import annotations

import copy
import signal
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from tests.e2e.harness import WorkerProcess, job_status, reaping_settings, wait_for
from tests.e2e.test_handback import HANDBACK_SPEC

pytestmark = pytest.mark.slow

TIMING = {"seconds", "samples_per_second"}


def test_killed_worker_group_is_requeued_and_resumes_bit_identically(tmp_path: Path) -> None:
    from api.auth.service import create_key
    from api.main import create_app

    settings = reaping_settings(tmp_path, "cpu-lost-group")
    app = create_app(settings)
    reaper = WorkerProcess(settings, tmp_path / "reaper.log", "--queues", "maintenance", "--beat")
    first = WorkerProcess(settings, tmp_path / "first.log")
    second: WorkerProcess | None = None
    base = copy.deepcopy(HANDBACK_SPEC)
    base["generalization"] = {"dropout": 0.1}
    try:
        with TestClient(app) as client:
            with app.state.session_factory() as session:
                headers = {"Authorization": f"Bearer {create_key(session, owner='alice')[1]}"}
            first.wait_ready(settings)
            body = {"name": "lost-group", "base": base, "grid": {}, "seeds": 3}
            created = client.post("/v1/sweeps", json=body, headers=headers)
            assert created.status_code == 202, created.text
            ids = [job["id"] for job in created.json()["jobs"]]
            wait_for(lambda: job_status(client, headers, ids[0])["progress"]["epoch"] >= 2, 90, first.output)
            first.process.send_signal(signal.SIGKILL)
            first.process.wait()

            second = WorkerProcess(settings, tmp_path / "second.log")

            def finished() -> list[dict] | None:
                jobs = [client.get(f"/v1/jobs/{job_id}", headers=headers).json() for job_id in ids]
                return jobs if all(job["status"] not in ("queued", "running") for job in jobs) else None

            jobs = wait_for(finished, 180, lambda: second.output() + reaper.output())
            assert [job["status"] for job in jobs] == ["succeeded"] * 3, [job["error"] for job in jobs]
            assert all(job["attempts"] == 2 for job in jobs), [job["attempts"] for job in jobs]
            assert len({job["replica_group"] for job in jobs}) == 1
            assert second.output().count("resumes from its last checkpoint") == 3
        straight = uninterrupted_group([job["spec"] for job in jobs], tmp_path / "straight")
        for job, alone in zip(jobs, straight, strict=True):
            assert {k: v for k, v in job["result"]["final"].items() if k not in TIMING} == {
                k: v for k, v in alone["final"].items() if k not in TIMING
            }
            assert job["result"]["test"] == alone["test"]
    finally:
        for process in (reaper, first, second):
            if process is not None:
                process.stop()


def uninterrupted_group(specs: list[dict], out: Path) -> list[dict]:
    """The same replicas trained as one group without a stop, on one torch thread as the worker trains."""
    import torch

    from training.group import fit_group
    from training.spec import JobSpec

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        results = fit_group([JobSpec.model_validate(s) for s in specs], [out / str(i) for i in range(3)])
    finally:
        torch.set_num_threads(threads)
    return [result.model_dump(mode="json") for result in results]
