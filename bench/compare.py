"""Compare benchmark: GET /v1/compare over 1,000 jobs × 100 epochs, on PostgreSQL and SQLite.

Seeds one sweep of finished jobs (20 groups × 50 seeds; realistic records: losses, accuracy, gradient
stats and per-layer diagnostics) straight into a fresh database, then times the endpoint through the app
(TestClient, statistics and JSON serialization included). The cases run interleaved (one call of each,
round after round) and the table shows each median, and how much of the default request the statistics
(tests, effects, bands: api.compare.analysis.analyze) took:
  .venv/bin/python bench/compare.py                     # PostgreSQL (TRAINCTL_BENCH_DATABASE_URL) + SQLite
  .venv/bin/python bench/compare.py --jobs 200 --epochs 50 --repeat 5
PostgreSQL: TRAINCTL_BENCH_DATABASE_URL (default postgresql+psycopg://postgres@127.0.0.1:5432/test) names
the server; the benchmark creates its own database there and drops it afterwards.
"""

from __future__ import annotations

import argparse
import copy
import os
import random
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from contextlib import AbstractContextManager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import insert, text

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from api.compare import service as compare_service  # noqa: E402
from core.config import Settings  # noqa: E402
from core.curves import curve_rows  # noqa: E402
from core.db import scratch_database  # noqa: E402
from core.migrate import upgrade_database  # noqa: E402
from core.models import EpochMetric, Job, JobCurve, JobCurveField, Sweep  # noqa: E402
from core.process import freeze_startup_heap  # noqa: E402
from training.spec import EXAMPLE_SPEC  # noqa: E402

DEFAULT_POSTGRES = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
LAYERS = ("hidden1", "hidden2", "hidden3", "output")
ACTIVATIONS = ["sigmoid", "tanh", "relu", "leaky_relu", "elu"]
DROPOUTS = [0.0, 0.1, 0.2, 0.3]  # × 5 activations = 20 groups; the rest are seeds


def postgres_database(server_url: str) -> AbstractContextManager[str]:
    """A fresh, uniquely named PostgreSQL database, dropped afterwards."""
    return scratch_database(server_url, "trainctl_bench")


def epoch_record(rng: random.Random, epoch: int, scale: float) -> dict[str, Any]:
    """A record shaped like the training loop's, about 1.2 kB of JSON."""
    loss = scale / (1 + 0.1 * epoch) + rng.random() * 0.02
    return {
        "epoch": epoch,
        "train_loss": loss * 0.9,
        "train_accuracy": 1 - loss / 3,
        "val_loss": loss,
        "val_accuracy": 1 - loss / 2.5,
        "learning_rate": 0.01,
        "grad_norm": rng.random(),
        "grad_norm_max": rng.random() * 2,
        "clipped_fraction": None,
        "seconds": 0.05 + rng.random() * 0.01,
        "samples_per_second": 2400.0 + rng.random() * 100,
        "layers": [
            {
                "name": name,
                "grad_norm": rng.random() * 10.0 ** (depth - 3),
                "weight_norm": 1.0 + depth + rng.random(),
                "update_ratio": rng.random() * 0.01,
                "activation_mean": rng.random(),
                "activation_std": rng.random(),
                "saturated_fraction": rng.random() * 0.1,
                "dead_fraction": None,
            }
            for depth, name in enumerate(LAYERS)
        ],
    }


def seed(database_url: str, *, jobs: int, epochs: int) -> tuple[str, float]:
    """One sweep of `jobs` finished jobs of `epochs` records each; returns (sweep id, seconds taken)."""
    from core.db import make_engine

    started = time.perf_counter()
    rng = random.Random(0)
    engine = make_engine(database_url)
    sweep_id, now = "sw_bench", datetime.now(UTC)
    grid = {"activation": ACTIVATIONS, "generalization.dropout": DROPOUTS}
    points = len(ACTIVATIONS) * len(DROPOUTS)
    seeds = -(-jobs // points)
    with engine.begin() as connection:
        base = copy.deepcopy(EXAMPLE_SPEC)
        connection.execute(
            insert(Sweep),
            [{"id": sweep_id, "owner": "bench", "name": "bench", "base": base, "grid": grid, "seeds": seeds}],
        )
        job_rows, metric_rows, curves, curve_fields = [], [], [], []
        for index in range(jobs):
            activation = ACTIVATIONS[index // seeds % len(ACTIVATIONS)]
            dropout = DROPOUTS[index // (seeds * len(ACTIVATIONS)) % len(DROPOUTS)]
            spec = copy.deepcopy(base)
            spec["activation"], spec["generalization"]["dropout"] = activation, dropout
            spec["training"]["seed"] = index % seeds
            job_id = f"job_{index:016x}"
            scale = 1.0 + ACTIVATIONS.index(activation) * 0.1 + dropout * 0.2
            records = [epoch_record(rng, epoch, scale) for epoch in range(1, epochs + 1)]
            best = min(records, key=lambda record: record["val_loss"])
            summary = [{k: v for k, v in r.items() if k != "layers"} for r in (best, records[-1])]
            job_rows.append(
                {
                    "id": job_id,
                    "owner": "bench",
                    "name": "bench",
                    "spec": spec,
                    "status": "succeeded",
                    "warnings": [],
                    "cancel_requested": False,
                    "epoch": epochs,
                    "epochs": epochs,
                    "attempts": 1,
                    "created_at": now + timedelta(microseconds=index),
                    "queued_at": now,
                    "result": {
                        "status": "succeeded",
                        "epochs_run": epochs,
                        "stopped_early": False,
                        "best_epoch": best["epoch"],
                        "best": summary[0],
                        "final": summary[1],
                        "test": {"test_loss": best["val_loss"] * 1.05, "test_accuracy": best["val_accuracy"]},
                        "seconds": epochs * 0.05,
                    },
                    "sweep_id": sweep_id,
                    "sweep_params": {
                        "activation": activation,
                        "generalization.dropout": dropout,
                        "training.seed": index % seeds,
                    },
                }
            )
            # What core.lifecycle stores when a job finishes.
            curve, fields = curve_rows(job_id, ((record["epoch"], record) for record in records))
            curves.append(curve)
            curve_fields += fields
            metric_rows += [
                {"job_id": job_id, "epoch": record["epoch"], "record": record, "created_at": now}
                for record in records
            ]
        connection.execute(insert(Job), job_rows)
        connection.execute(insert(JobCurve), curves)
        connection.execute(insert(JobCurveField), curve_fields)
        for start in range(0, len(metric_rows), 10_000):
            connection.execute(insert(EpochMetric), metric_rows[start : start + 10_000])
    with engine.connect() as connection:
        if connection.dialect.name == "postgresql":
            connection.execute(text("ANALYZE"))
            connection.commit()
    engine.dispose()
    return sweep_id, time.perf_counter() - started


def interleaved_medians(calls: list[Callable[[], Any]], repeat: int) -> list[float]:
    """Median ms of each call, timed round-robin so that load on the machine hits every case alike."""
    for call in calls:
        call()  # warm: connections, caches
    times: list[list[float]] = [[] for _ in calls]
    for _ in range(repeat):
        for call, spent in zip(calls, times, strict=True):
            started = time.perf_counter()
            call()
            spent.append(time.perf_counter() - started)
    return [statistics.median(spent) * 1000 for spent in times]


class Timed:
    """Wraps a function and keeps the seconds of each call (to time the statistics inside a request)."""

    def __init__(self, function: Callable[..., Any]) -> None:
        self.function = function
        self.seconds: list[float] = []

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        started = time.perf_counter()
        try:
            return self.function(*args, **kwargs)
        finally:
            self.seconds.append(time.perf_counter() - started)


def run(name: str, database_url: str, args: argparse.Namespace, workdir: Path) -> list[str]:
    from fastapi.testclient import TestClient

    from api.auth.service import create_key
    from api.main import create_app

    upgrade_database(database_url)
    sweep_id, seeded = seed(database_url, jobs=args.jobs, epochs=args.epochs)
    settings = Settings(_env_file=None, data_dir=workdir / "var", database_url=database_url)  # type: ignore[call-arg]
    app = create_app(settings)
    freeze_startup_heap()  # as `trainctl serve` and `trainctl api` do before serving
    with TestClient(app) as client:
        with app.state.session_factory() as session:
            _key, secret = create_key(session, owner="bench")
        headers = {"Authorization": f"Bearer {secret}"}
        ids = ",".join(f"job_{index:016x}" for index in range(args.jobs))

        def get(url: str) -> Any:
            response = client.get(url, headers=headers)
            assert response.status_code == 200, response.text[:500]
            return response

        body = get(f"/v1/compare?sweep={sweep_id}").json()
        assert len(body["jobs"]) == args.jobs and body["curves"] is None
        assert len(body["tests"]) == len(body["groups"]) - 1 and body["effects"]["complete"]
        assert all(len(band["epochs"]) == args.epochs for band in body["bands"]["val_loss"])
        cases = [
            ("sweep=, statistics + bands (default)", f"/v1/compare?sweep={sweep_id}"),
            (
                "sweep=, job_curves=true (every job's curves too)",
                f"/v1/compare?sweep={sweep_id}&job_curves=true",
            ),
            ("jobs=<1000 ids>, target=val_loss<0.6", f"/v1/compare?jobs={ids}&target=val_loss<0.6"),
            (
                "sweep=, 4 fields",
                f"/v1/compare?sweep={sweep_id}&fields=train_loss,val_loss,val_accuracy,grad_norm",
            ),
            ("sweep=, format=csv (jobs)", f"/v1/compare?sweep={sweep_id}&format=csv"),
            ("sweep=, format=csv&table=groups", f"/v1/compare?sweep={sweep_id}&format=csv&table=groups"),
            ("plot.png, 1000 curves, 20 bands", f"/v1/compare/plot.png?sweep={sweep_id}"),
        ]
        timed = Timed(compare_service.analyze)
        compare_service.analyze = timed
        try:
            medians = interleaved_medians([lambda url=url: get(url) for _label, url in cases], args.repeat)
        finally:
            compare_service.analyze = timed.function
        # The first case's calls are every len(cases)-th analyze call, after the warm-up round.
        analysis = statistics.median(timed.seconds[len(cases) :: len(cases)]) * 1000
        rows = [
            f"| {name} | {label} | {ms:.0f} ms |" for (label, _url), ms in zip(cases, medians, strict=True)
        ]
        rows.append(
            f"| {name} | of which statistics + bands (analyze), default request | {analysis:.0f} ms |"
        )
        size = len(get(f"/v1/compare?sweep={sweep_id}").content)
    rows.append(
        f"| {name} | (seeded {args.jobs * args.epochs:,} records in {seeded:.1f} s; "
        f"JSON answer {size / 1e6:.1f} MB) | |"
    )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--jobs", type=int, default=1000)
    parser.add_argument("--epochs", type=int, default=100)
    parser.add_argument("--repeat", type=int, default=7, help="timed calls per case (the median is shown)")
    parser.add_argument("--no-postgres", action="store_true", help="SQLite only")
    args = parser.parse_args()
    rows = ["| backend | request | median |", "|---|---|---|"]
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        if not args.no_postgres:
            server = os.environ.get("TRAINCTL_BENCH_DATABASE_URL", DEFAULT_POSTGRES)
            with postgres_database(server) as database_url:
                rows += run("PostgreSQL", database_url, args, workdir / "pg")
        rows += run("SQLite", f"sqlite:///{workdir / 'bench.db'}", args, workdir / "sqlite")
    print(f"\nGET /v1/compare over {args.jobs} jobs × {args.epochs} epochs, {os.cpu_count()} CPU cores\n")
    print("\n".join(rows))


if __name__ == "__main__":
    main()
