"""Live events (SSE): every epoch in order then `end`, Last-Event-ID resumes, one shared poller."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from typing import Any

from fastapi import FastAPI
from fastapi.testclient import TestClient

from api.events.hub import EventHub
from core.config import Settings
from core.db import utcnow
from core.models import EpochMetric, Job, JobStatus
from tests.api.runs import finish_run, record
from training.spec import EXAMPLE_SPEC


def parse(text: str) -> list[dict[str, Any]]:
    """text/event-stream into [{event, id, data}] (comments as {"comment": ...})."""
    events = []
    for block in text.split("\n\n"):
        if not block.strip():
            continue
        event: dict[str, Any] = {}
        for line in block.split("\n"):
            if line.startswith(":"):
                event["comment"] = line[1:].strip()
            else:
                name, _, value = line.partition(": ")
                event[name] = json.loads(value) if name == "data" else value
        events.append(event)
    return events


def stream(client: TestClient, url: str, headers: dict[str, str]) -> list[dict[str, Any]]:
    with client.stream("GET", url, headers=headers) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        return parse(response.read().decode())


def submit(client: TestClient, headers: dict[str, str]) -> str:
    return str(client.post("/v1/jobs", json={"spec": EXAMPLE_SPEC}, headers=headers).json()["id"])


def test_a_finished_job_streams_every_epoch_then_end(
    app: FastAPI, client: TestClient, auth_headers: dict[str, str]
) -> None:
    job_id = submit(client, auth_headers)
    finish_run(app, job_id, [1.0, 0.8, 0.6, 0.5])
    events = [
        event for event in stream(client, f"/v1/jobs/{job_id}/events", auth_headers) if "event" in event
    ]
    # the epochs happened before the job finished: they come first, then its status, then end
    assert [event["event"] for event in events] == ["epoch", "epoch", "epoch", "epoch", "status", "end"]
    assert events[4]["data"]["status"] == "succeeded"
    assert [event["id"] for event in events[0:4]] == ["1", "2", "3", "4"]
    assert [event["data"]["val_loss"] for event in events[0:4]] == [1.0, 0.8, 0.6, 0.5]
    assert events[0]["data"]["layers"][0]["name"] == "hidden1", "the whole record travels"
    end = events[-1]["data"]
    assert end["id"] == job_id and end["status"] == "succeeded" and end["result"]["best_epoch"] == 4


def test_last_event_id_resumes_after_that_epoch(
    app: FastAPI, client: TestClient, auth_headers: dict[str, str]
) -> None:
    job_id = submit(client, auth_headers)
    finish_run(app, job_id, [1.0, 0.8, 0.6, 0.5])
    resumed = stream(client, f"/v1/jobs/{job_id}/events", auth_headers | {"Last-Event-ID": "2"})
    assert [event.get("id") for event in resumed if event.get("event") == "epoch"] == ["3", "4"]
    by_query = stream(client, f"/v1/jobs/{job_id}/events?last_event_id=3", auth_headers)
    assert [event.get("id") for event in by_query if event.get("event") == "epoch"] == ["4"]
    assert by_query[-1]["event"] == "end"


def test_a_running_job_streams_live_until_it_ends(
    app: FastAPI, client: TestClient, auth_headers: dict[str, str], settings: Settings
) -> None:
    settings.events_poll_interval, settings.events_keepalive = 0.05, 0.1
    job_id = submit(client, auth_headers)
    with app.state.session_factory() as session:
        job = session.get(Job, job_id)
        assert job is not None
        job.status, job.started_at = JobStatus.running, utcnow()
        session.commit()

    def train() -> None:  # what a worker does: one record per epoch, then the final status
        for epoch in range(1, 6):
            time.sleep(0.08)
            with app.state.session_factory() as session:
                session.add(EpochMetric(job_id=job_id, epoch=epoch, record=record(epoch, 1 / epoch)))
                session.get(Job, job_id).epoch = epoch  # type: ignore[union-attr]
                session.commit()
        time.sleep(0.3)  # long enough for a keep-alive comment
        with app.state.session_factory() as session:
            job = session.get(Job, job_id)
            assert job is not None
            job.status, job.finished_at, job.result = (
                JobStatus.succeeded,
                utcnow(),
                {"status": "succeeded", "epochs_run": 5},
            )
            session.commit()

    worker = threading.Thread(target=train)
    worker.start()
    try:
        events = stream(client, f"/v1/jobs/{job_id}/events", auth_headers)
    finally:
        worker.join()
    named = [event for event in events if "event" in event]
    assert [event["id"] for event in named if event["event"] == "epoch"] == ["1", "2", "3", "4", "5"]
    statuses = [event["data"]["status"] for event in named if event["event"] == "status"]
    assert statuses[0] in ("queued", "running") and statuses[-1] == "succeeded"
    assert named[-1]["event"] == "end" and named[-1]["data"]["result"]["epochs_run"] == 5
    assert any(event.get("comment") == "keep-alive" for event in events)


def test_epochs_written_before_the_job_finished_come_before_its_status(
    app: FastAPI, client: TestClient, auth_headers: dict[str, str], settings: Settings
) -> None:
    # The reported bug: epoch 1 streamed live, then epochs 2-10 and the final status landed between two
    # polls, and `status: succeeded` went out before epochs 2-10. A client stopping at it lost them.
    settings.events_poll_interval, settings.events_keepalive = 0.3, 5.0
    job_id = submit(client, auth_headers)
    with app.state.session_factory() as session:
        job = session.get(Job, job_id)
        assert job is not None
        job.status, job.started_at = JobStatus.running, utcnow()
        session.commit()

    def write(epochs: range) -> None:
        with app.state.session_factory() as session:
            for epoch in epochs:
                session.add(EpochMetric(job_id=job_id, epoch=epoch, record=record(epoch, 1 / epoch)))
            session.get(Job, job_id).epoch = epochs[-1]  # type: ignore[union-attr]
            session.commit()

    def train() -> None:
        time.sleep(0.1)
        write(range(1, 2))
        time.sleep(0.7)  # the stream has sent epoch 1
        write(range(2, 11))
        with app.state.session_factory() as session:  # finishing right after, before the next poll
            job = session.get(Job, job_id)
            assert job is not None
            job.status, job.finished_at, job.result = JobStatus.succeeded, utcnow(), {"epochs_run": 10}
            session.commit()

    worker = threading.Thread(target=train)
    worker.start()
    try:
        events = [
            event for event in stream(client, f"/v1/jobs/{job_id}/events", auth_headers) if "event" in event
        ]
    finally:
        worker.join()
    named = [event for event in events if "event" in event]
    order = [(event["event"], event.get("id") or event["data"].get("status")) for event in named]
    assert order == [
        ("status", "running"),
        *[("epoch", str(epoch)) for epoch in range(1, 11)],
        ("status", "succeeded"),
        ("end", "succeeded"),
    ], order


def test_another_owners_job_has_no_events(
    client: TestClient, auth_headers: dict[str, str], other_headers: dict[str, str]
) -> None:
    job_id = submit(client, auth_headers)
    response = client.get(f"/v1/jobs/{job_id}/events", headers=other_headers)
    assert response.status_code == 404 and response.headers["content-type"].startswith("application/problem")
    assert client.get("/v1/jobs/job_nope/events", headers=auth_headers).status_code == 404


def test_one_poller_serves_every_stream_and_holds_no_connection_while_it_sleeps(
    app: FastAPI, client: TestClient, auth_headers: dict[str, str]
) -> None:
    job_ids = [submit(client, auth_headers) for _ in range(3)]
    hub = EventHub(app.state.session_factory, interval=0.2)
    pool = app.state.engine.pool

    async def watch() -> tuple[int, list[int]]:
        subscribers = [hub.subscribe(job_id, after=0) for job_id in job_ids for _ in range(4)]  # 12 streams
        checked_out = []
        for _ in range(8):
            await asyncio.sleep(0.125)
            checked_out.append(pool.checkedout())
        polls = hub.polls
        assert all(subscriber.queue.qsize() == 1 for subscriber in subscribers), "each got the status event"
        await hub.close()
        return polls, checked_out

    polls, checked_out = asyncio.run(watch())
    # 1 s at one read per 0.2 s for all 12 streams together: about 6 ticks, not 12 streams × 5 ticks.
    assert 3 <= polls <= 7, polls
    assert checked_out.count(0) >= 6, f"connections held between ticks: {checked_out}"
