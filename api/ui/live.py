"""A job page's live updates: the shared event hub's epochs and status, re-sent as HTML fragments over SSE.

The htmx SSE extension swaps each event's data into the element whose sse-swap names the event:
`epoch` appends the new rows to the epoch table, `curves` replaces the charts, `status` the status line,
and `end` the outcome section (result, checkpoints, plots, actions), after which the browser closes the
stream. The hub reads the database once per poll interval for every open stream together.
"""

from __future__ import annotations

import asyncio
import contextlib
import statistics
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

from api.events.hub import Event, EventHub
from api.ui.charts import learning_charts

# Renders a named fragment with extra context; made by the route (it holds the request and the job).
Render = Callable[[str, dict[str, Any]], str]
LoadOutcome = Callable[[], dict[str, Any]]


def sse(event: str, html: str, *, event_id: int | None = None) -> str:
    """One Server-Sent Event whose data is HTML (one data: line per line of it)."""
    lines = [f"id: {event_id}"] if event_id is not None else []
    lines.append(f"event: {event}")
    lines += [f"data: {line}" for line in html.splitlines() or [""]]
    return "\n".join(lines) + "\n\n"


@dataclass
class LiveJob:
    """What the stream knows of the job so far."""

    status: str
    epoch: int
    epochs: int
    records: list[dict[str, Any]] = field(default_factory=list)

    def status_context(self) -> dict[str, Any]:
        """What job/_status.html shows."""
        return {"status": self.status, "epoch": self.epoch, "epochs": self.epochs, "eta": self.eta_seconds()}

    def eta_seconds(self) -> float | None:
        """Mean recorded epoch time × epochs left, while running."""
        times = [r["seconds"] for r in self.records if isinstance(r.get("seconds"), int | float)]
        if self.status != "running" or not times:
            return None
        return statistics.fmean(times) * max(self.epochs - self.epoch, 0)


def _drain(first: Event | None, queue: asyncio.Queue[Event | None]) -> list[Event | None]:
    batch = [first]
    while not queue.empty():
        batch.append(queue.get_nowait())
    return batch


async def job_stream(
    hub: EventHub,
    *,
    job_id: str,
    shown: int,
    live: LiveJob,
    render: Render,
    load_outcome: LoadOutcome,
    keepalive: float,
) -> AsyncIterator[str]:
    """HTML events for a job page that already shows epochs up to `shown`."""
    subscriber = hub.subscribe(job_id, after=0)  # every record: the charts are redrawn from all of them
    try:
        yield "retry: 1000\n\n"
        while True:
            try:
                first = await asyncio.wait_for(subscriber.queue.get(), timeout=keepalive)
            except TimeoutError:
                yield ": keep-alive\n\n"
                continue
            rows: list[dict[str, Any]] = []
            ended = False
            for event in _drain(first, subscriber.queue):
                if event is None or event.event == "end":
                    ended = True
                elif event.event == "epoch":
                    live.records.append(event.data)
                    live.epoch = max(live.epoch, int(event.id or 0))
                    if (event.id or 0) > shown:
                        rows.append(event.data)
                        shown = int(event.id or 0)
                elif event.event == "status":
                    live.status, live.epochs = event.data["status"], event.data["epochs"]
                    live.epoch = max(live.epoch, int(event.data["epoch"]))
            if rows:
                yield sse("epoch", render("job/_rows.html", {"records": rows}), event_id=shown)
                charts = learning_charts(live.records, job_id)
                yield sse("curves", render("job/_charts.html", {"charts": charts}))
            if ended:
                outcome = await asyncio.to_thread(load_outcome)
                yield sse("status", render("job/_status.html", {"st": outcome["st"]}))
                yield sse("end", render("job/_outcome.html", outcome))
                return
            yield sse("status", render("job/_status.html", {"st": live.status_context()}))
    finally:
        with contextlib.suppress(Exception):
            hub.unsubscribe(subscriber)
