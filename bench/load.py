"""Load test on loopback: N clients submit tiny jobs and poll their status and metrics for a fixed time.

Starts a real service on PostgreSQL + Redis (a fresh database, dropped afterwards): `trainctl api`
processes (uvicorn, one per port, clients spread over them) and `trainctl worker` processes, then runs
the clients (httpx.AsyncClient, one connection each) and prints p50/p99 latency per endpoint and errors.

    .venv/bin/python bench/load.py [--clients 50] [--seconds 60] [--api-processes 2] [--workers 2] \\
        [--database postgresql+psycopg://postgres@127.0.0.1:5432/test] [--broker redis://127.0.0.1:6379/0]

Each client loops: POST /v1/jobs (iris, one hidden layer of 8, 3 epochs), then until the job ends (at most
10 rounds) GET /v1/jobs/{id} and GET /v1/jobs/{id}/metrics, --poll s between rounds (0.5 s, as
`trainctl submit --wait` polls). An error is a
transport failure or any status other than 202 (submit) or 200 (reads), warm-up included; 429 counts too.
Latencies are those after the --warmup seconds (connection pools fill, workers take their first jobs).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from core.db import scratch_database  # noqa: E402

TINY_SPEC: dict[str, Any] = {
    "dataset": {"name": "iris"},
    "network": {"type": "mlp", "hidden_layers": [8]},
    "training": {"epochs": 3, "batch_size": 16, "seed": 0},
}
DONE = {"succeeded", "failed", "cancelled"}


class Recorder:
    """Latencies (seconds) per endpoint label, and errors by kind."""

    def __init__(self, record_after: float = 0.0) -> None:
        self.record_after = record_after  # time.monotonic() before which nothing is recorded (warm-up)
        self.latencies: dict[str, list[float]] = defaultdict(list)
        self.errors: dict[str, int] = defaultdict(int)

    async def call(
        self, client: httpx.AsyncClient, label: str, method: str, url: str, ok: int, **kw: Any
    ) -> Any:
        started = time.perf_counter()
        recorded = time.monotonic() >= self.record_after
        try:
            response = await client.request(method, url, **kw)
        except httpx.HTTPError as error:
            self.errors[f"{label}: {type(error).__name__}"] += 1
            return None
        if recorded:
            self.latencies[label].append(time.perf_counter() - started)
        if response.status_code != ok:
            self.errors[f"{label}: {response.status_code}"] += 1
            return None
        return response.json()


async def client_loop(
    base_url: str, headers: dict[str, str], until: float, poll: float, recorder: Recorder
) -> int:
    jobs = 0
    async with httpx.AsyncClient(base_url=base_url, headers=headers, timeout=30) as client:
        while time.monotonic() < until:
            job = await recorder.call(
                client, "POST /v1/jobs", "POST", "/v1/jobs", 202, json={"spec": TINY_SPEC}
            )
            if job is None:
                await asyncio.sleep(0.2)
                continue
            jobs += 1
            for _ in range(10):
                if time.monotonic() >= until:
                    break
                status = await recorder.call(client, "GET /v1/jobs/{id}", "GET", f"/v1/jobs/{job['id']}", 200)
                await recorder.call(
                    client, "GET /v1/jobs/{id}/metrics", "GET", f"/v1/jobs/{job['id']}/metrics", 200
                )
                if status is not None and status["status"] in DONE:
                    break
                await asyncio.sleep(poll)
    return jobs


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def wait_http(url: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if httpx.get(url, timeout=2).status_code < 500:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise SystemExit(f"{url} did not answer in {timeout:.0f} s")


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--seconds", type=float, default=60)
    parser.add_argument("--api-processes", type=int, default=2)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--warmup", type=float, default=5, help="first seconds not timed (errors count)")
    parser.add_argument("--poll", type=float, default=0.5, help="seconds between polls (trainctl's wait)")
    parser.add_argument("--port", type=int, default=8750, help="first API port")
    parser.add_argument("--database", default="postgresql+psycopg://postgres@127.0.0.1:5432/test")
    parser.add_argument("--broker", default="redis://127.0.0.1:6379/0")
    args = parser.parse_args()

    scratch = ExitStack()  # the database is dropped after the processes using it have stopped
    database_url = scratch.enter_context(scratch_database(args.database, "trainctl_load"))
    name = make_url(database_url).database
    processes: list[subprocess.Popen[bytes]] = []
    tmp = Path(tempfile.mkdtemp(prefix="trainctl-load-"))
    env = {
        **os.environ,
        "TRAINCTL_DATABASE_URL": database_url,
        "TRAINCTL_BROKER_URL": args.broker,
        "TRAINCTL_ARTIFACTS_URL": str(tmp / "artifacts"),
        "TRAINCTL_DATA_DIR": str(tmp / "var"),
        "TRAINCTL_DEFAULT_QUEUE": f"load-{name}",
        "TRAINCTL_MAX_QUEUED_JOBS_PER_OWNER": "100000",
    }
    trainctl = [sys.executable, "-m", "trainctl"]
    try:
        from api.auth.service import create_key
        from core.db import make_engine, make_session_factory
        from core.migrate import upgrade_database

        upgrade_database(database_url)
        engine = make_engine(database_url)
        with make_session_factory(engine)() as session:
            _key, secret = create_key(session, owner="load")
        engine.dispose()
        urls = [f"http://127.0.0.1:{args.port + i}" for i in range(args.api_processes)]
        for i in range(len(urls)):
            log = (tmp / f"api-{i}.log").open("wb")
            command = [*trainctl, "api", "--port", str(args.port + i)]
            processes.append(
                subprocess.Popen(command, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
            )
        for i in range(args.workers):
            log = (tmp / f"worker-{i}.log").open("wb")
            command = [*trainctl, "worker", "--queues", env["TRAINCTL_DEFAULT_QUEUE"], "--concurrency", "1"]
            command += ["--threads", "1"]
            processes.append(
                subprocess.Popen(command, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
            )
        for url in urls:
            wait_http(f"{url}/v1/health")
        time.sleep(5)  # workers import and warm torch

        recorder = Recorder()  # record_after is set when the clients start
        headers = {"Authorization": f"Bearer {secret}"}

        async def run() -> list[int]:
            recorder.record_after = time.monotonic() + args.warmup
            until = time.monotonic() + args.warmup + args.seconds
            loops = [
                client_loop(urls[i % len(urls)], headers, until, args.poll, recorder)
                for i in range(args.clients)
            ]
            return await asyncio.gather(*loops)

        started = time.monotonic()
        jobs = sum(asyncio.run(run()))
        elapsed = time.monotonic() - started - args.warmup
        with create_engine(database_url).connect() as connection:
            finished = connection.execute(
                text("SELECT status, count(*) FROM job GROUP BY status ORDER BY status")
            ).all()

        print(
            f"\n{args.clients} clients, {elapsed:.0f} s timed after {args.warmup:g} s of warm-up, "
            f"{args.api_processes} API process(es), "
            f"{args.workers} workers, poll {args.poll:g} s, PostgreSQL + Redis; "
            f"{jobs} jobs submitted"
        )
        print("jobs by status at the end: " + ", ".join(f"{status} {count}" for status, count in finished))
        print("\n| endpoint | requests | p50 ms | p99 ms | max ms |\n|---|---:|---:|---:|---:|")
        for label, values in recorder.latencies.items():
            print(
                f"| {label} | {len(values)} | {statistics.median(values) * 1000:.1f} | "
                f"{percentile(values, 0.99) * 1000:.1f} | {max(values) * 1000:.1f} |"
            )
        total_errors = sum(recorder.errors.values())
        print(
            f"\nerrors: {total_errors}" + "".join(f"\n  {kind}: {n}" for kind, n in recorder.errors.items())
        )
        return 1 if total_errors else 0
    finally:
        for process in processes:
            process.terminate()
        for process in processes:
            try:
                process.wait(20)
            except subprocess.TimeoutExpired:
                process.kill()
        scratch.close()


if __name__ == "__main__":
    sys.exit(main())
