"""`trainctl serve` as a real process: first key, API + worker, a job over HTTP, restart, clean stop."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from tests.e2e.harness import IRIS_SPEC, REPO_ROOT, wait_for

pytestmark = pytest.mark.slow


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def worker_names(http: httpx.Client) -> set[str]:
    """Workers the service has seen (empty while it is still starting)."""
    try:
        response = http.get("/v1/health")
    except httpx.TransportError:
        return set()
    if response.status_code != 200:
        return set()
    return {str(worker["name"]) for worker in response.json().get("workers", [])}


def children_of(pid: int) -> set[int]:
    found = set()
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == pid:
                found.add(int(entry.name))
    return found


def test_serve_runs_a_job_restarts_its_worker_and_stops_cleanly(tmp_path: Path) -> None:
    port = free_port()
    data_dir = tmp_path / "var"
    env = {k: v for k, v in os.environ.items() if not k.startswith("TRAINCTL_")}
    env["TRAINCTL_REAPER_INTERVAL"] = "1"
    log = (tmp_path / "serve.log").open("wb")
    serve = subprocess.Popen(
        [sys.executable, "-m", "trainctl", "serve", "--port", str(port), "--data-dir", str(data_dir)],
        cwd=tmp_path,
        env={**env, "PYTHONPATH": str(REPO_ROOT)},
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    output = lambda: (tmp_path / "serve.log").read_text(errors="replace")[-5000:]  # noqa: E731
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=5) as http:
            wait_for(lambda: serve.poll() is None and worker_names(http), 60, output)
            key_file = data_dir / "api-key"
            secret = key_file.read_text().strip()
            assert secret in (tmp_path / "serve.log").read_text(), "the first key is printed once"
            assert key_file.stat().st_mode & 0o077 == 0
            headers = {"Authorization": f"Bearer {secret}"}

            job = http.post("/v1/jobs", json={"spec": IRIS_SPEC}, headers=headers)
            assert job.status_code == 202, job.text
            job_id = job.json()["id"]
            done = wait_for(
                lambda: (
                    http.get(f"/v1/jobs/{job_id}", headers=headers).json()["status"]
                    in {"succeeded", "failed"}
                ),
                60,
                output,
            )
            assert done and http.get(f"/v1/jobs/{job_id}", headers=headers).json()["status"] == "succeeded"

            # The worker dies: serve starts another one, which announces itself.
            seen = worker_names(http)
            (worker_pid,) = children_of(serve.pid)
            os.kill(worker_pid, signal.SIGKILL)
            wait_for(lambda: children_of(serve.pid) - {worker_pid}, 20, output)
            wait_for(lambda: worker_names(http) - seen, 60, output)
        worker_pid = next(iter(children_of(serve.pid)))
        serve.send_signal(signal.SIGTERM)
        assert serve.wait(timeout=40) == 0, output()
        wait_for(lambda: not Path(f"/proc/{worker_pid}").exists(), 10, "the worker outlived serve")
    finally:
        if serve.poll() is None:
            serve.kill()
        log.close()
