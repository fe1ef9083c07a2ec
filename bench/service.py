"""Service benchmark: submit->running latency, per-job overhead, and worker concurrency vs torch threads.

Runs a real API (`trainctl api`) and real workers (`trainctl worker`) per backend and prints a table:
  .venv/bin/python bench/service.py                       # embedded (SQLite + SQLite broker) only
  .venv/bin/python bench/service.py --postgres postgresql+psycopg://postgres@127.0.0.1:5432/test \
      --redis redis://127.0.0.1:6379/0                    # also PostgreSQL + Redis
"""

from __future__ import annotations

import argparse
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from contextlib import AbstractContextManager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import select

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from core.db import make_engine, make_session_factory, scratch_database  # noqa: E402
from core.migrate import upgrade_database  # noqa: E402
from core.models import Job, WorkerBeat  # noqa: E402

ONE_EPOCH_IRIS = {
    "dataset": {"name": "iris"},
    "network": {"hidden_layers": [16]},
    "training": {"epochs": 1, "batch_size": 16},
}
# A small job whose training dominates its overhead: what many users of a shared CPU box submit.
SMALL_JOB = {
    "dataset": {"name": "digits"},
    "network": {"hidden_layers": [128, 128]},
    "training": {"epochs": 4, "batch_size": 32},
}
FINISHED = {"succeeded", "failed", "cancelled"}


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def postgres_database(server_url: str) -> AbstractContextManager[str]:
    """A fresh, uniquely named PostgreSQL database, dropped afterwards."""
    return scratch_database(server_url, "trainctl_bench")


class Deployment:
    """An API process and worker processes sharing one set of settings."""

    def __init__(self, workdir: Path, database_url: str, broker_url: str | None) -> None:
        self.workdir = workdir
        self.queue = f"bench-{uuid.uuid4().hex[:6]}"
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("TRAINCTL_")}
        self.env |= {
            "TRAINCTL_DATA_DIR": str(workdir / "var"),
            "TRAINCTL_DATABASE_URL": database_url,
            "TRAINCTL_DEFAULT_QUEUE": self.queue,
            "PYTHONPATH": str(ROOT),
        }
        if broker_url:
            self.env["TRAINCTL_BROKER_URL"] = broker_url
        upgrade_database(database_url)
        self.engine = make_engine(database_url)
        self.sessions = make_session_factory(self.engine)
        self.processes: list[subprocess.Popen[bytes]] = []
        self.port = free_port()
        self._start(["api", "--port", str(self.port)], "api.log")
        self.http = httpx.Client(base_url=f"http://127.0.0.1:{self.port}", timeout=10)
        self.headers = {"Authorization": f"Bearer {self._key()}"}
        self._wait(lambda: self._healthy(), 60, "API did not start")

    def _start(self, args: list[str], log: str) -> subprocess.Popen[bytes]:
        handle = (self.workdir / log).open("ab")
        process = subprocess.Popen(
            [sys.executable, "-m", "trainctl", *args], env=self.env, stdout=handle, stderr=subprocess.STDOUT
        )
        self.processes.append(process)
        return process

    def _key(self) -> str:
        from api.auth.service import create_key

        with self.sessions() as session:
            return create_key(session, owner="bench")[1]

    def _healthy(self) -> bool:
        try:
            return self.http.get("/v1/health").status_code == 200
        except httpx.TransportError:
            return False

    @staticmethod
    def _wait(condition: Any, timeout: float, message: str) -> None:
        deadline = time.monotonic() + timeout
        while not condition():
            if time.monotonic() > deadline:
                raise SystemExit(message)
            time.sleep(0.05)

    def start_worker(self, concurrency: int, threads: int) -> subprocess.Popen[bytes]:
        """A worker on this deployment's queue; returns once its pool processes are warm."""
        with self.sessions() as session:
            before = set(session.scalars(select(WorkerBeat.name)).all())
        process = self._start(
            ["worker", "--queues", self.queue, "--concurrency", str(concurrency), "--threads", str(threads)],
            "worker.log",
        )

        def warm() -> bool:
            with self.sessions() as session:
                return len(set(session.scalars(select(WorkerBeat.name)).all()) - before) >= concurrency

        self._wait(warm, 90, "worker did not start")
        time.sleep(1.0)  # the consumer starts polling right after the pool is ready
        return process

    def stop_worker(self, process: subprocess.Popen[bytes]) -> None:
        process.terminate()
        process.wait(30)
        self.processes.remove(process)

    def submit(self, spec: dict[str, Any]) -> str:
        response = self.http.post("/v1/jobs", json={"spec": spec}, headers=self.headers)
        response.raise_for_status()
        return str(response.json()["id"])

    def wait_finished(self, job_ids: list[str], timeout: float = 600) -> list[Job]:
        def done() -> bool:
            with self.sessions() as session:
                statuses = session.scalars(select(Job.status).where(Job.id.in_(job_ids))).all()
            return len(statuses) == len(job_ids) and all(status in FINISHED for status in statuses)

        self._wait(done, timeout, "jobs did not finish")
        with self.sessions() as session:
            jobs = list(session.scalars(select(Job).where(Job.id.in_(job_ids))).all())
        failed = [job.error for job in jobs if job.status != "succeeded"]
        if failed:
            raise SystemExit(f"benchmark jobs failed: {failed[:3]}")
        return jobs

    def close(self) -> None:
        self.http.close()
        for process in self.processes:
            process.terminate()
        for process in self.processes:
            process.wait(30)
        self.engine.dispose()


def as_utc(moment: datetime) -> datetime:
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def submit_to_running(deployment: Deployment, jobs: int) -> tuple[float, float]:
    """Median and p90 seconds from POST to the worker's claim, one job at a time on a warm, idle worker."""
    latencies = []
    for _ in range(jobs):
        submitted = datetime.now(UTC)
        job_id = deployment.submit(ONE_EPOCH_IRIS)
        (job,) = deployment.wait_finished([job_id])
        assert job.started_at is not None
        latencies.append((as_utc(job.started_at) - submitted).total_seconds())
        time.sleep(0.2)  # idle again, as a worker waiting for work is
    latencies.sort()
    return statistics.median(latencies), latencies[int(0.9 * (len(latencies) - 1))]


def one_epoch_throughput(deployment: Deployment, jobs: int) -> tuple[float, float, float]:
    """Jobs per minute for a burst of 1-epoch iris jobs; mean seconds per job and of that, training."""
    started = time.monotonic()
    job_ids = [deployment.submit(ONE_EPOCH_IRIS) for _ in range(jobs)]
    finished = deployment.wait_finished(job_ids)
    elapsed = time.monotonic() - started
    training = statistics.mean(float((job.result or {}).get("seconds", 0.0)) for job in finished)
    return jobs / elapsed * 60, elapsed / jobs, training


def makespan(deployment: Deployment, jobs: int) -> float:
    """Seconds to finish a burst of small jobs (samples the worker's aggregate throughput)."""
    started = time.monotonic()
    deployment.wait_finished([deployment.submit(SMALL_JOB) for _ in range(jobs)])
    return time.monotonic() - started


def bench_backend(
    name: str, database_url: str, broker_url: str | None, args: argparse.Namespace
) -> list[str]:
    rows = []
    with tempfile.TemporaryDirectory(prefix="trainctl-bench-") as workdir:
        deployment = Deployment(Path(workdir), database_url, broker_url)
        try:
            worker = deployment.start_worker(concurrency=1, threads=1)
            deployment.wait_finished([deployment.submit(ONE_EPOCH_IRIS)])  # first job: any lazy imports
            median, p90 = submit_to_running(deployment, args.latency_jobs)
            rows.append(
                f"| {name} | submit → running (warm idle worker) | median {median * 1000:.0f} ms, "
                f"p90 {p90 * 1000:.0f} ms ({args.latency_jobs} jobs) |"
            )
            per_minute, per_job, training = one_epoch_throughput(deployment, args.burst_jobs)
            rows.append(
                f"| {name} | 1-epoch iris jobs, one worker, one job at a time | {per_minute:.0f} jobs/min "
                f"({per_job * 1000:.0f} ms per job, of which training {training * 1000:.0f} ms) |"
            )
            results = {}
            for concurrency, threads in ((1, 2), (2, 1)):
                deployment.stop_worker(worker)
                worker = deployment.start_worker(concurrency=concurrency, threads=threads)
                deployment.wait_finished([deployment.submit(SMALL_JOB) for _ in range(concurrency)])  # warm
                seconds = makespan(deployment, args.small_jobs)
                results[(concurrency, threads)] = seconds
                rows.append(
                    f"| {name} | {args.small_jobs} small jobs (digits, 128×128, 4 epochs), "
                    f"{concurrency} × {threads} thread(s) | {seconds:.1f} s, "
                    f"{args.small_jobs / seconds * 60:.0f} jobs/min |"
                )
            ratio = results[(1, 2)] / results[(2, 1)]
            rows.append(f"| {name} | 2 × 1 thread vs 1 × 2 threads | {ratio:.2f}× the throughput |")
        finally:
            deployment.close()
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--postgres", default=os.environ.get("TRAINCTL_TEST_DATABASE_URL"))
    parser.add_argument("--redis", default=os.environ.get("TRAINCTL_TEST_BROKER_URL"))
    parser.add_argument("--latency-jobs", type=int, default=20)
    parser.add_argument("--burst-jobs", type=int, default=30)
    parser.add_argument("--small-jobs", type=int, default=16)
    args = parser.parse_args()

    rows = ["| backend | measurement | result |", "|---|---|---|"]
    with tempfile.TemporaryDirectory(prefix="trainctl-bench-db-") as folder:
        rows += bench_backend("embedded (SQLite)", f"sqlite:///{folder}/trainctl.db", None, args)
    if args.postgres and args.redis:
        with postgres_database(args.postgres) as database_url:
            rows += bench_backend("PostgreSQL + Redis", database_url, args.redis, args)
    else:
        rows.append("| PostgreSQL + Redis | skipped | pass --postgres and --redis |")
    print(f"\ntrainctl service benchmark, {os.cpu_count()} CPU cores, {datetime.now(UTC):%Y-%m-%d}\n")
    print("\n".join(rows))


if __name__ == "__main__":
    main()
