"""Where a compare request's time goes: per phase of api.compare.service.compare_jobs, in process.

Seeds the same 1,000 jobs × 100 epochs as bench/compare.py (PostgreSQL and SQLite), then times the
default request (sweep=, statistics + bands) phase by phase, median of `--repeat` calls after one warm-up:
job selection, curve read, spec diff, seed groups, statistics (analyze), the rest of building the
answer, and its JSON serialization (HTTP is not included):
  .venv/bin/python bench/compare_phases.py --repeat 7
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import compare as bench
from sqlalchemy.orm import Session

from api.compare import service
from core.db import make_engine
from core.migrate import upgrade_database

PHASES = {
    "selected_jobs": "job selection",
    "read_curves": "curve read",
    "spec_diff": "spec diff",
    "group_jobs": "seed groups",
    "analyze": "statistics + bands (analyze)",
}


def timed(function: Callable[..., Any], spent: list[float]) -> Callable[..., Any]:
    def call(*args: Any, **kwargs: Any) -> Any:
        started = time.perf_counter()
        try:
            return function(*args, **kwargs)
        finally:
            spent.append(time.perf_counter() - started)

    return call


def profile(name: str, url: str, repeat: int) -> list[str]:
    upgrade_database(url)
    sweep_id, _seconds = bench.seed(url, jobs=1000, epochs=100)
    engine = make_engine(url)
    spent: dict[str, list[float]] = {phase: [] for phase in PHASES}
    originals = {phase: getattr(service, phase) for phase in PHASES}
    for phase, function in originals.items():
        setattr(service, phase, timed(function, spent[phase]))
    totals: list[float] = []
    dumps: list[float] = []
    try:
        for call in range(repeat + 1):
            with Session(engine) as session:
                started = time.perf_counter()
                comparison = service.compare_jobs(session, owner="bench", sweep_id=sweep_id)
                built = time.perf_counter()
                comparison.model_dump_json()
                dumped = time.perf_counter()
            if call == 0:  # warm-up
                for times in spent.values():
                    times.clear()
                continue
            totals.append(built - started)
            dumps.append(dumped - built)
    finally:
        for phase, function in originals.items():
            setattr(service, phase, function)
        engine.dispose()
    medians = {phase: statistics.median(times) * 1000 for phase, times in spent.items()}
    total = statistics.median(totals) * 1000
    rows = [f"| {name} | {PHASES[phase]} | {ms:.0f} ms |" for phase, ms in medians.items()]
    rows.append(f"| {name} | the rest of building the answer | {total - sum(medians.values()):.0f} ms |")
    rows.append(f"| {name} | JSON serialization | {statistics.median(dumps) * 1000:.0f} ms |")
    rows.append(
        f"| {name} | **compare_jobs + serialization** | {total + statistics.median(dumps) * 1000:.0f} ms |"
    )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--repeat", type=int, default=7)
    args = parser.parse_args()
    rows = ["| backend | phase | median |", "|---|---|---|"]
    server = os.environ.get("TRAINCTL_BENCH_DATABASE_URL", bench.DEFAULT_POSTGRES)
    with bench.postgres_database(server) as url:
        rows += profile("PostgreSQL", url, args.repeat)
    with tempfile.TemporaryDirectory() as folder:
        rows += profile("SQLite", f"sqlite:///{Path(folder) / 'phases.db'}", args.repeat)
    print(f"\nGET /v1/compare?sweep= phases, 1000 jobs × 100 epochs, load average {os.getloadavg()[0]:.1f}\n")
    print("\n".join(rows))


if __name__ == "__main__":
    main()
