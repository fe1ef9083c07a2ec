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


def start_serve(
    tmp_path: Path, data_dir: Path, port: int, log_name: str, *args: str
) -> subprocess.Popen[bytes]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TRAINCTL_")}
    env["TRAINCTL_REAPER_INTERVAL"] = "1"
    command = [sys.executable, "-m", "trainctl", "serve", "--port", str(port), "--data-dir", str(data_dir)]
    return subprocess.Popen(
        [*command, *args],
        cwd=tmp_path,
        env={**env, "PYTHONPATH": str(REPO_ROOT)},
        stdout=(tmp_path / log_name).open("wb"),
        stderr=subprocess.STDOUT,
    )


def descendants(pid: int) -> set[int]:
    found, frontier = set(), {pid}
    while frontier:
        children = set().union(*(children_of(parent) for parent in frontier))
        frontier = children - found
        found |= children
    return found


def alive(pid: int) -> bool:
    """Whether the process exists and is not a zombie waiting to be reaped."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def test_a_killed_serve_takes_its_worker_and_pool_along(tmp_path: Path) -> None:
    port, data_dir = free_port(), tmp_path / "var"
    serve = start_serve(tmp_path, data_dir, port, "serve.log", "--concurrency", "2")
    output = lambda: (tmp_path / "serve.log").read_text(errors="replace")[-5000:]  # noqa: E731
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=5) as http:
            wait_for(lambda: serve.poll() is None and worker_names(http), 60, output)
        tree = descendants(serve.pid)
        assert len(tree) >= 3, f"a worker and its two pool processes: {tree}"
        serve.kill()  # SIGKILL: serve cannot stop anything itself
        serve.wait()
        # The worker notices within ~3 s; a loaded CI machine can take a few more to end its pool.
        wait_for(lambda: not any(alive(pid) for pid in tree), 20, "the worker or its pool outlived serve")
    finally:
        if serve.poll() is None:
            serve.kill()


def test_a_second_serve_on_the_same_data_dir_refuses_to_start(tmp_path: Path) -> None:
    port, data_dir = free_port(), tmp_path / "var"
    first = start_serve(tmp_path, data_dir, port, "first.log")
    output = lambda: (tmp_path / "first.log").read_text(errors="replace")[-5000:]  # noqa: E731
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=5) as http:
            wait_for(lambda: first.poll() is None and worker_names(http), 60, output)
        second = start_serve(tmp_path, data_dir, free_port(), "second.log")
        assert second.wait(timeout=60) == 1
        refused = (tmp_path / "second.log").read_text()
        assert "another trainctl serve" in refused and f"pid {first.pid}" in refused, refused
        assert first.poll() is None, "the running serve is left alone"
    finally:
        first.send_signal(signal.SIGTERM)
        first.wait(timeout=40)
