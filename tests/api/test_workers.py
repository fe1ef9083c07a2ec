"""GET /v1/workers: Celery workers grouped from their training processes' heartbeats."""

from __future__ import annotations

from datetime import timedelta

from fastapi import FastAPI
from fastapi.testclient import TestClient

from core import lifecycle
from core.db import utcnow
from core.models import WorkerBeat


def test_workers_grouped_by_celery_worker(
    app: FastAPI, client: TestClient, auth_headers: dict[str, str]
) -> None:
    with app.state.session_factory() as session:
        for pid, job in ((101, "job_a"), (102, None)):
            lifecycle.record_worker_beat(
                session,
                name=f"box:{pid}",
                device="cpu",
                queues="cpu,maintenance",
                current_job_id=job,
                node="cpu-100@box",
                host="box",
                pid=100,
                concurrency=2,
            )
        session.add(
            WorkerBeat(
                name="old:1", device="cuda:0", queues="gpu", last_seen=utcnow() - timedelta(minutes=30)
            )
        )
        session.add(
            WorkerBeat(name="gone:1", device="cpu", queues="cpu", last_seen=utcnow() - timedelta(days=2))
        )
        session.commit()
    assert client.get("/v1/workers").status_code == 401
    workers = client.get("/v1/workers", headers=auth_headers).json()["items"]
    assert [worker["name"] for worker in workers] == ["cpu-100@box", "old:1"]
    live = workers[0]
    assert (live["host"], live["pid"], live["concurrency"], live["processes"]) == ("box", 100, 2, 2)
    assert (live["queues"], live["device"], live["current_jobs"], live["alive"]) == (
        ["cpu", "maintenance"],
        "cpu",
        ["job_a"],
        True,
    )
    assert workers[1]["alive"] is False and workers[1]["current_jobs"] == []
    recent = client.get("/v1/workers", params={"seen_within": 60}, headers=auth_headers).json()["items"]
    assert [worker["name"] for worker in recent] == ["cpu-100@box"]
