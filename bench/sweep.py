"""Replica groups through the service: a 4 configurations × 5 seeds sweep, grouping on against off.

Two deployments (API + one worker of 2 processes × 1 thread each, SQLite + embedded broker), one with
TRAINCTL_REPLICA_GROUPS=0; the same sweep runs on each in turn, interleaved, `--rounds` times.

    .venv/bin/python bench/sweep.py [--rounds 2]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy import select

sys.path.insert(0, str(Path(__file__).resolve().parent))
from service import Deployment

from core.models import EpochMetric, Job

SWEEP = {
    "name": "bench-replicas",
    "base": {
        "dataset": {"name": "digits"},
        "network": {"hidden_layers": [64, 64]},
        "training": {"epochs": 20, "batch_size": 32},
    },
    "grid": {"activation": ["relu", "tanh"], "normalization.layers": ["none", "layer"]},
    "seeds": 5,
}


def run_sweep(deployment: Deployment) -> tuple[float, float, int]:
    """Seconds from POST to the last job's end, mean samples/s per job (its epochs), replica groups used."""
    started = time.monotonic()
    response = deployment.http.post("/v1/sweeps", json=SWEEP, headers=deployment.headers)
    response.raise_for_status()
    job_ids = [job["id"] for job in response.json()["jobs"]]
    jobs = deployment.wait_finished(job_ids, timeout=1800)
    elapsed = time.monotonic() - started
    with deployment.sessions() as session:
        records = session.scalars(select(EpochMetric.record).where(EpochMetric.job_id.in_(job_ids))).all()
        groups = set(session.scalars(select(Job.replica_group).where(Job.id.in_(job_ids))).all())
    per_job = statistics.mean(float(r["samples_per_second"]) for r in records)
    groups.discard(None)
    assert len(jobs) == 20
    return elapsed, per_job, len(groups)


def main() -> None:
    formatter = argparse.RawDescriptionHelpFormatter
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=formatter)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    results: dict[str, list[tuple[float, float, int]]] = {"on": [], "off": []}
    with tempfile.TemporaryDirectory(prefix="trainctl-bench-sweep-") as folder:
        root = Path(folder)
        deployments = {}
        for mode, flag in (("on", "1"), ("off", "0")):
            (root / mode).mkdir()
            deployment = Deployment(
                root / mode, f"sqlite:///{root / mode}/trainctl.db", None, {"TRAINCTL_REPLICA_GROUPS": flag}
            )
            deployment.start_worker(concurrency=2, threads=1)
            deployments[mode] = deployment
        try:
            for _ in range(args.rounds):
                for mode in ("on", "off"):
                    results[mode].append(run_sweep(deployments[mode]))
        finally:
            for deployment in deployments.values():
                deployment.close()
    on = statistics.median(r[0] for r in results["on"])
    off = statistics.median(r[0] for r in results["off"])
    print(f"\nreplica groups through the service, {os.cpu_count()} CPU cores, {datetime.now(UTC):%Y-%m-%d}")
    print("4 configurations × 5 seeds, digits MLP [64, 64], 20 epochs, batch 32; worker 2 × 1 thread\n")
    print("| grouping | groups | sweep wall time (median of rounds) | samples/s per job |")
    print("|---|---|---|---|")
    for mode, wall in (("on", on), ("off", off)):
        rows = results[mode]
        rate = statistics.median(r[1] for r in rows)
        walls = ", ".join(f"{r[0]:.1f}" for r in rows)
        print(f"| {mode} | {rows[0][2]} | {wall:.1f} s ({walls}) | {rate:,.0f} |")
    print(f"\ngrouping on finishes the sweep {off / on:.2f}× faster")


if __name__ == "__main__":
    main()
