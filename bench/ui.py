"""Dashboard benchmark: server time of the /ui jobs table with 10,000 jobs on PostgreSQL.

Seeds a scratch PostgreSQL database (dropped afterwards) with one owner's jobs (results, tags, sweeps, a few
running with epoch records) plus another owner's, then times in-process requests (the app's own work:
queries, rendering; no network) for each page variant, interleaved round by round with the API's
GET /v1/jobs?limit=50 as the baseline, and prints a table:
  .venv/bin/python bench/ui.py --postgres postgresql+psycopg://postgres@127.0.0.1:5432/test
"""

from __future__ import annotations

import argparse
import os
import random
import re
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import insert, text

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from api.auth.service import create_key  # noqa: E402
from core.config import Settings  # noqa: E402
from core.db import scratch_database  # noqa: E402
from core.migrate import upgrade_database  # noqa: E402
from core.models import EpochMetric, Job, JobTag, Sweep  # noqa: E402
from training.spec import EXAMPLE_SPEC  # noqa: E402

OWNER = "bench"
STATUSES = ["succeeded"] * 80 + ["failed"] * 8 + ["cancelled"] * 6 + ["queued"] * 4 + ["running"] * 2
BUDGET_MS = 300.0


def seed(session_factory: Any, *, jobs: int, others: int, rng: random.Random) -> str:
    """Insert `jobs` jobs of OWNER and `others` of someone else; returns one sweep id of OWNER."""
    start = datetime(2026, 1, 1, tzinfo=UTC)
    sweeps = [f"sw_bench{index:08d}" for index in range(20)]
    job_rows, tag_rows, metric_rows = [], [], []
    for index in range(jobs + others):
        owner = OWNER if index < jobs else "someone-else"
        status = rng.choice(STATUSES)
        created = start + timedelta(seconds=index * 7)
        epochs = 30
        epoch = epochs if status == "succeeded" else rng.randrange(0, epochs)
        val_loss = rng.uniform(0.05, 1.0)
        result = None
        if status == "succeeded":
            best = {"epoch": epoch, "train_loss": val_loss * 0.9, "val_loss": val_loss}
            best["val_accuracy"] = 1 - val_loss / 2
            test = {"test_loss": val_loss * 1.1, "test_accuracy": 1 - val_loss / 2.2}
            result = {"status": status, "epochs_run": epoch, "best_epoch": epoch, "best": best, "final": best}
            result |= {"test": test, "parameters": 131, "seconds": rng.uniform(1, 60)}
        job_id = f"job_{index:016x}"
        job_rows.append(
            {
                "id": job_id,
                "owner": owner,
                "name": f"run-{index % 500}",
                "spec": EXAMPLE_SPEC,
                "status": status,
                "warnings": [],
                "cancel_requested": False,
                "epoch": epoch,
                "epochs": epochs,
                "epoch_seconds": 0.05 if status == "running" else None,
                "result": result,
                "attempts": 1,
                "created_at": created,
                "queued_at": created,
                "started_at": created + timedelta(seconds=2) if status != "queued" else None,
                "finished_at": created + timedelta(seconds=40) if status in ("succeeded", "failed") else None,
                "sweep_id": sweeps[index % 20] if owner == OWNER and index % 10 == 0 else None,
            }
        )
        tag_rows += [{"job_id": job_id, "tag": f"group-{index % 25}"}, {"job_id": job_id, "tag": "bench"}]
        if status == "running" and epoch > 0:
            record = {"epoch": epoch, "train_loss": val_loss, "val_loss": val_loss, "val_accuracy": 0.5}
            metric_rows.append({"job_id": job_id, "epoch": epoch, "record": record, "created_at": created})
    with session_factory() as session:
        session.execute(
            insert(Sweep),
            [
                {"id": sweep, "owner": OWNER, "name": sweep, "base": EXAMPLE_SPEC, "grid": {}, "seeds": 1}
                for sweep in sweeps
            ],
        )
        session.execute(insert(Job), job_rows)
        session.execute(insert(JobTag), tag_rows)
        if metric_rows:
            session.execute(insert(EpochMetric), metric_rows)
        session.commit()
        session.execute(text("ANALYZE"))  # plans as on a database that has been running a while
        session.commit()
    return sweeps[0]


def sign_in(client: Any, key: str) -> None:
    token = re.search(r'name="csrf_token" value="([^"]+)"', client.get("/ui/signin").text)
    assert token is not None
    response = client.post(
        "/ui/signin", data={"csrf_token": token[1], "api_key": key}, follow_redirects=False
    )
    assert response.status_code == 303, response.text


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument(
        "--postgres",
        default=os.environ.get(
            "TRAINCTL_TEST_DATABASE_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
        ),
        help="PostgreSQL server URL (a scratch database is made on it and dropped)",
    )
    parser.add_argument("--jobs", type=int, default=10_000, help="jobs of the signed-in owner")
    parser.add_argument("--others", type=int, default=2_000, help="jobs of another owner")
    parser.add_argument("--rounds", type=int, default=30, help="timed rounds (each runs every case once)")
    args = parser.parse_args()

    from fastapi.testclient import TestClient

    from api.main import create_app

    rng = random.Random(0)
    with scratch_database(args.postgres, "trainctl_bench") as url, tempfile.TemporaryDirectory() as tmp:
        upgrade_database(url)
        settings = Settings(_env_file=None, data_dir=Path(tmp) / "var", database_url=url)  # type: ignore[call-arg]
        app = create_app(settings)
        with app.state.session_factory() as session:
            _key, secret = create_key(session, owner=OWNER)
        began = time.perf_counter()
        sweep = seed(app.state.session_factory, jobs=args.jobs, others=args.others, rng=rng)
        print(f"seeded {args.jobs:,} + {args.others:,} jobs in {time.perf_counter() - began:.1f} s")
        last_page = -(-args.jobs // 50)
        cases = {
            "API GET /v1/jobs?limit=50 (baseline)": (
                "/v1/jobs?limit=50",
                {"Authorization": f"Bearer {secret}"},
            ),
            "/ui first page (50 rows)": ("/ui", {}),
            "/ui htmx refresh (table only)": ("/ui", {"HX-Request": "true", "HX-Target": "jobs"}),
            "/ui?status=running": ("/ui?status=running", {}),
            "/ui?tag=group-3": ("/ui?tag=group-3", {}),
            "/ui?name=run-42": ("/ui?name=run-42", {}),
            f"/ui?sweep={sweep}": (f"/ui?sweep={sweep}", {}),
            "/ui?sort=val_loss": ("/ui?sort=val_loss", {}),
            f"/ui?page={last_page} (last)": (f"/ui?page={last_page}", {}),
        }
        times: dict[str, list[float]] = {name: [] for name in cases}
        with TestClient(app) as client:
            sign_in(client, secret)
            for path, headers in cases.values():  # warm-up: connections, templates, query plans
                assert client.get(path, headers=headers).status_code == 200, path
            for _round in range(args.rounds):
                for name, (path, headers) in cases.items():
                    began = time.perf_counter()
                    response = client.get(path, headers=headers)
                    times[name].append((time.perf_counter() - began) * 1000)
                    assert response.status_code == 200, (path, response.text[:500])
        baseline = statistics.median(times[next(iter(cases))])
        print(f"\n{args.rounds} interleaved rounds, in-process (server time, no network); PostgreSQL\n")
        print(f"{'case':<44} {'median ms':>10} {'p95 ms':>8} {'× baseline':>11} {'< 300 ms':>9}")
        for name, values in times.items():
            median = statistics.median(values)
            p95 = statistics.quantiles(values, n=20)[-1]
            ok = "yes" if p95 < BUDGET_MS else "NO"
            print(f"{name:<44} {median:>10.1f} {p95:>8.1f} {median / baseline:>11.2f} {ok:>9}")


if __name__ == "__main__":
    main()
