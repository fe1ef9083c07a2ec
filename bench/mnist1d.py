"""MNIST-1D: the paper's table reproduced through the service, from examples/specs/mnist1d-*.json.

    .venv/bin/python bench/mnist1d.py [--seeds 0 1 2] [--max-epochs N] [--concurrency 2]

Starts `trainctl serve` on a scratch data dir, submits every example spec once per seed with the HTTP
client, waits for the jobs and prints test accuracy (mean ± sample std over seeds) beside the paper's
(Greydanus & Kobak, ICML 2024, Table 1), the parameter count the service reports, and the mean
seconds of a job. --max-epochs caps the epochs of every spec (to fit a shared machine); the table
says which ran shorter than the spec.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from trainctl.client import Client  # noqa: E402

PAPER = {"logistic": 32, "mlp": 68, "cnn": 94, "gru": 91}  # test accuracy %, the paper's Table 1


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def clean_env() -> dict[str, str]:
    """This environment without TRAINCTL_ settings, with the checkout importable."""
    return {k: v for k, v in os.environ.items() if not k.startswith("TRAINCTL_")} | {"PYTHONPATH": str(ROOT)}


def start_service(data_dir: Path, port: int, concurrency: int) -> subprocess.Popen[bytes]:
    """`trainctl serve` (API + one worker, SQLite, embedded broker) on a scratch data dir."""
    env = clean_env() | {"TRAINCTL_DATA_DIR": str(data_dir)}
    command = [sys.executable, "-m", "trainctl", "serve", "--port", str(port), "--data-dir", str(data_dir)]
    command += ["--concurrency", str(concurrency), "--threads", "1"]
    log = (data_dir.parent / "serve.log").open("ab")
    return subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)


def connect(url: str, data_dir: Path, timeout: float = 120) -> Client:
    """A client with the key `serve` writes, once the API answers."""
    deadline = time.monotonic() + timeout
    key_file = data_dir / "api-key"
    while time.monotonic() < deadline:
        if key_file.exists():
            client = Client(url, key_file.read_text().strip())
            try:
                client.jobs(limit=1)
                return client
            except Exception:  # the API is still starting
                client.close()
        time.sleep(0.5)
    raise SystemExit(f"trainctl serve did not answer within {timeout:.0f} s; see serve.log")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--max-epochs", type=int, help="cap every spec's epochs at this")
    parser.add_argument("--concurrency", type=int, default=2, help="jobs at once in the worker")
    parser.add_argument("--only", nargs="+", choices=list(PAPER), default=list(PAPER))
    args = parser.parse_args()
    scratch = Path(tempfile.mkdtemp(prefix="trainctl-mnist1d-"))
    data_dir, port = scratch / "var", free_port()
    # generated before the jobs start, so that their seconds are training time
    fetch = [sys.executable, "-m", "trainctl", "datasets", "fetch", "mnist1d", "--data-dir", str(data_dir)]
    subprocess.run(fetch, check=True, env=clean_env(), stdout=subprocess.DEVNULL)
    service = start_service(data_dir, port, args.concurrency)
    try:
        client = connect(f"http://127.0.0.1:{port}", data_dir)
        jobs: dict[str, list[str]] = {}
        epochs: dict[str, int] = {}
        for model in args.only:
            spec = json.loads((ROOT / "examples" / "specs" / f"mnist1d-{model}.json").read_text())
            epochs[model] = min(spec["training"]["epochs"], args.max_epochs or spec["training"]["epochs"])
            spec["training"]["epochs"] = epochs[model]
            jobs[model] = []
            for seed in args.seeds:
                spec["training"]["seed"] = seed
                job = client.submit(spec, name=f"mnist1d-{model} seed {seed}", tags=["mnist1d"])
                jobs[model].append(job["id"])
        print(f"trainctl serve, {args.concurrency} jobs at once, 1 torch thread each, seeds {args.seeds}")
        print()
        print("| model | paper | trainctl (mean ± std) | per seed | parameters | epochs | seconds per job |")
        print("|---|---|---|---|---|---|---|")
        for model, ids in jobs.items():
            finished = [client.wait(job_id, timeout=3600) for job_id in ids]
            failed = [job for job in finished if job["status"] != "succeeded"]
            if failed:
                raise SystemExit(
                    f"{model}: {failed[0]['id']} {failed[0]['status']}: {failed[0].get('error')}"
                )
            accuracy = [100 * job["result"]["test"]["test_accuracy"] for job in finished]
            seconds = statistics.mean(job["result"]["seconds"] for job in finished)
            spread = statistics.stdev(accuracy) if len(accuracy) > 1 else 0.0
            parameters = finished[0]["result"]["parameters"]
            each = ", ".join(f"{value:.1f}" for value in accuracy)
            print(
                f"| {model} | {PAPER[model]}% | {statistics.mean(accuracy):.1f}% ± {spread:.1f} | {each} "
                f"| {parameters:,} | {epochs[model]} | {seconds:.0f} |"
            )
    finally:
        os.killpg(service.pid, signal.SIGTERM)
        service.wait(60)


if __name__ == "__main__":
    main()
