"""The /ui dashboard's live parts: a job page's SSE fragments, and the server-drawn charts."""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Callable
from typing import Any

from fastapi import FastAPI
from fastapi.testclient import TestClient

from core.db import utcnow
from core.models import EpochMetric, Job
from tests.api.conftest import epoch_record
from tests.api.test_ui import signed_in

__all__ = ["signed_in"]  # the fixture, shared with test_ui


def test_a_running_jobs_page_stream_sends_rows_curves_status_then_the_outcome(
    app: FastAPI, client: TestClient, signed_in: str, submit: Callable[..., dict[str, Any]], settings: Any
) -> None:
    settings.events_poll_interval, settings.events_keepalive = 0.05, 0.1
    job_id = submit()["id"]
    with app.state.session_factory() as session:
        job = session.get(Job, job_id)
        assert job is not None
        job.status, job.started_at = "running", utcnow()
        session.commit()

    def train() -> None:  # what a worker does: one record per epoch, then the final status
        for epoch in range(1, 4):
            time.sleep(0.1)
            with app.state.session_factory() as session:
                session.add(EpochMetric(job_id=job_id, epoch=epoch, record=epoch_record(epoch)))
                session.get(Job, job_id).epoch = epoch  # type: ignore[union-attr]
                session.commit()
        time.sleep(0.2)
        with app.state.session_factory() as session:
            job = session.get(Job, job_id)
            assert job is not None
            job.status, job.finished_at = "succeeded", utcnow()
            job.result = {"status": "succeeded", "epochs_run": 3, "best_epoch": 3, "best": epoch_record(3)}
            session.commit()

    worker = threading.Thread(target=train)
    worker.start()
    try:
        with client.stream("GET", f"/ui/jobs/{job_id}/events") as response:
            assert response.headers["content-type"].startswith("text/event-stream")
            text = "".join(response.iter_text())
    finally:
        worker.join()
    events = [block for block in text.split("\n\n") if "event: " in block]
    kinds = [re.search(r"event: (\w+)", block)[1] for block in events]  # type: ignore[index]
    assert kinds.count("epoch") >= 1 and kinds[-1] == "end"
    rows = "".join(block for block in events if "event: epoch" in block)
    epochs = [int(n) for n in re.findall(r'<th scope="row">(\d+)</th>', rows)]
    assert epochs == [1, 2, 3]  # each once, in order
    curves = [block for block in events if "event: curves" in block]
    assert curves and "<svg" in curves[-1]
    assert "train_loss from 1 at epoch 1 to 0.333333 at epoch 3" in curves[-1]
    assert "3/30" in [block for block in events if "event: status" in block][-1]
    assert "Epochs run" in events[-1] and "Delete this job" in events[-1]  # finished: delete, not cancel


def test_charts_keep_spikes_and_at_most_the_asked_points() -> None:
    from api.ui.charts import downsample, line_chart

    curve = [(epoch, 1.0 / epoch) for epoch in range(1, 2001)]
    curve[1234] = (1235, 50.0)  # a spike
    kept = downsample(curve, 400)
    assert len(kept) <= 400 and (1235, 50.0) in kept and kept == sorted(kept)
    assert downsample(curve[:10], 400) == curve[:10]
    svg = line_chart({"val_loss": curve}, title="Loss", chart_id="c")
    assert "(log scale)" in svg and svg.count("<polyline") == 1 and "to 5e-04 at epoch 2000" in svg
