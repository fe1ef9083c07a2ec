"""Real worker processes and a real API for end-to-end tests (no eager mode, no mocks)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

from fastapi.testclient import TestClient
from sqlalchemy import select

from core.config import Settings
from core.db import make_engine, make_session_factory, scratch_database
from core.models import WorkerBeat

REPO_ROOT = Path(__file__).resolve().parents[2]
WORKER_READY_S = 60.0

IRIS_SPEC: dict[str, Any] = {
    "dataset": {"name": "iris", "validation_fraction": 0.2, "test_fraction": 0.2},
    "network": {"type": "mlp", "hidden_layers": [16]},
    "optimizer": {"name": "adam", "learning_rate": 0.01},
    "training": {"epochs": 5, "batch_size": 16, "seed": 0},
}
# Long enough to cancel in the middle: many small steps, each one a chance to stop.
SLOW_SPEC: dict[str, Any] = {
    "dataset": {"name": "moons", "samples": 20000},
    "network": {"type": "mlp", "hidden_layers": [64, 64]},
    "training": {"epochs": 500, "batch_size": 8, "seed": 0},
}
# Plain SGD with a huge step on unscaled regression targets: the loss overflows within two epochs.
DIVERGING_SPEC: dict[str, Any] = {
    "dataset": {"name": "diabetes"},
    "network": {"type": "mlp", "hidden_layers": [8]},
    "normalization": {"inputs": "none"},
    "optimizer": {"name": "sgd", "learning_rate": 10},
    "training": {"epochs": 5, "seed": 0},
}


def settings_env(settings: Settings) -> dict[str, str]:
    """The TRAINCTL_* environment that gives a child process the same settings."""
    env = {
        "TRAINCTL_DATA_DIR": str(settings.data_dir),
        "TRAINCTL_DATABASE_URL": settings.resolved_database_url,
        "TRAINCTL_ARTIFACTS_URL": settings.resolved_artifacts_url,
        "TRAINCTL_DEFAULT_QUEUE": settings.default_queue,
        "TRAINCTL_HEARTBEAT_TIMEOUT": str(settings.heartbeat_timeout),
        "TRAINCTL_REAPER_INTERVAL": str(settings.reaper_interval),
        "TRAINCTL_BROKER_POLL_INTERVAL": str(settings.broker_poll_interval),
        "TRAINCTL_CHECKPOINT_SECONDS": str(settings.checkpoint_seconds),
    }
    if settings.broker_url:
        env["TRAINCTL_BROKER_URL"] = settings.broker_url
    env["TRAINCTL_DATASET_CACHE"] = str(settings.resolved_dataset_cache)
    if settings.dataset_mirror:
        env["TRAINCTL_DATASET_MIRROR"] = settings.dataset_mirror
    return env


def reaping_settings(tmp_path: Path, queue: str) -> Settings:
    """A migrated SQLite deployment whose reaper re-queues a job silent for 2 s, checking twice a second;
    its workers checkpoint after every epoch, so that a killed one leaves a checkpoint to resume from."""
    from core.migrate import upgrade_database

    settings = Settings(
        _env_file=None,  # type: ignore[call-arg]
        data_dir=tmp_path / "var",
        database_url=f"sqlite:///{tmp_path / 'trainctl.db'}",
        artifacts_url=str(tmp_path / "artifacts"),
        default_queue=queue,
        heartbeat_timeout=2.0,
        reaper_interval=0.5,
        checkpoint_seconds=0.0,
    )
    upgrade_database(settings.resolved_database_url)
    return settings


def postgres_database(server_url: str) -> AbstractContextManager[str]:
    """A fresh, uniquely named PostgreSQL database, dropped afterwards."""
    return scratch_database(server_url, "trainctl_e2e")


class WorkerProcess:
    """`trainctl worker` as a child process, its output in a log file."""

    def __init__(
        self,
        settings: Settings,
        log_path: Path,
        *extra_args: str,
        env: dict[str, str] | None = None,
        command: list[str] | None = None,
    ) -> None:
        self.log_path = log_path
        self.log = log_path.open("wb")
        if command is None:
            command = [sys.executable, "-m", "trainctl", "worker", "--queues", settings.default_queue]
            command += ["--concurrency", "1", "--threads", "1", *extra_args]
        self.process = subprocess.Popen(
            command,
            cwd=REPO_ROOT,
            env={**os.environ, **settings_env(settings), **(env or {})},
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )

    def wait_ready(self, settings: Settings, timeout: float = WORKER_READY_S) -> None:
        """Until the worker announced itself in the database (torch is imported and warm by then)."""
        engine = make_engine(settings.resolved_database_url)
        try:
            wait_for(
                lambda: self._announced(engine, self.process.pid),
                timeout,
                lambda: f"worker not ready; its log:\n{self.output()}",
            )
        finally:
            engine.dispose()
        time.sleep(0.5)  # the consumer starts right after the announcement

    def _announced(self, engine: Any, pid: int) -> bool:
        if self.process.poll() is not None:
            raise AssertionError(f"worker exited with {self.process.returncode}:\n{self.output()}")
        with make_session_factory(engine)() as session:
            names = session.scalars(select(WorkerBeat.name)).all()
        # Jobs run in the main process (solo pool) or in its pool children (prefork).
        pids = {pid} | child_pids(pid)
        return any(name.rsplit(":", 1)[-1] in {str(p) for p in pids} for name in names)

    def output(self) -> str:
        self.log.flush()
        return self.log_path.read_text(errors="replace")[-6000:]

    def stop(self, timeout: float = 20.0) -> int:
        """Warm-stop (SIGTERM), killing it if it does not exit in time."""
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.log.close()
        return self.process.returncode


def child_pids(pid: int) -> set[int]:
    """Processes whose parent is `pid` (Linux /proc)."""
    found = set()
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                parent = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, ValueError, IndexError):
                continue
            if parent == pid:
                found.add(int(entry.name))
    return found


def wait_for(
    condition: Callable[[], Any], timeout: float, message: Callable[[], str] | str = "timed out"
) -> Any:
    """Poll `condition` until it returns something truthy; fail with `message` after `timeout` s."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(message() if callable(message) else message)


def job_status(client: TestClient, headers: dict[str, str], job_id: str) -> dict[str, Any]:
    response = client.get(f"/v1/jobs/{job_id}", headers=headers)
    assert response.status_code == 200, response.text
    return response.json()


def wait_for_status(
    client: TestClient, headers: dict[str, str], job_id: str, statuses: set[str], timeout: float = 60.0
) -> dict[str, Any]:
    """Poll a job until its status is one of `statuses`; returns the job."""
    seen: list[str] = []

    def reached() -> dict[str, Any] | None:
        job = job_status(client, headers, job_id)
        if not seen or seen[-1] != job["status"]:
            seen.append(job["status"])
        return job if job["status"] in statuses else None

    return wait_for(reached, timeout, lambda: f"job {job_id} never reached {statuses}; saw {seen}")


def submit(client: TestClient, headers: dict[str, str], spec: dict[str, Any], **body: Any) -> str:
    response = client.post("/v1/jobs", json={"spec": spec, **body}, headers=headers)
    assert response.status_code == 202, response.text
    assert response.json()["status"] == "queued"
    return str(response.json()["id"])
