"""GET /v1/jobs/{id}/events: Server-Sent Events of a job's epochs and status, from the shared hub."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import APIRouter, Header, Query, Request
from fastapi.responses import StreamingResponse

from api.deps import OwnerDep, SessionDep, SettingsDep
from api.errors import problem_responses
from api.events.hub import EventHub, app_hub
from api.jobs.service import owned_job
from api.params import JobId

router = APIRouter(prefix="/v1/jobs", tags=["jobs"])

EXAMPLE_STREAM = (
    'event: status\ndata: {"id":"job_3f9c1a2b4d5e6f70","status":"running","epoch":0,"epochs":30}\n\n'
    'id: 1\nevent: epoch\ndata: {"epoch":1,"train_loss":0.93,"val_loss":0.88,"val_accuracy":0.7,...}\n\n'
    ": keep-alive\n\n"
    'event: end\ndata: {"id":"job_3f9c1a2b4d5e6f70","status":"succeeded","result":{...},...}\n\n'
)


def event_hub(request: Request) -> EventHub:
    """The app's shared poller, made on first use."""
    return app_hub(request.app)


async def _stream(hub: EventHub, *, job_id: str, after: int, keepalive: float) -> AsyncIterator[str]:
    subscriber = hub.subscribe(job_id, after=after)
    try:
        yield f"retry: {int(max(hub.interval, 1.0) * 1000)}\n\n"
        while True:
            try:
                event = await asyncio.wait_for(subscriber.queue.get(), timeout=keepalive)
            except TimeoutError:
                yield ": keep-alive\n\n"
                continue
            if event is None:
                return
            yield event.encode()
    finally:
        with contextlib.suppress(Exception):
            hub.unsubscribe(subscriber)


@router.get(
    "/{job_id}/events",
    operation_id="stream_job_events",
    summary="Live events of a job",
    description="A Server-Sent Events stream (`text/event-stream`): one `epoch` event per metrics record "
    "(`id` = epoch, `data` = the record) and a `status` event for the current status and whenever it "
    "changes, in the order they happened: a status change comes after the epochs written before it. A "
    "finished job streams all its epochs, then its final `status`, then `end` (data: the job summary), "
    "always last, after which the stream closes; a client may stop at a final status without missing an "
    "epoch. Reconnect with `Last-Event-ID` "
    "(or `?last_event_id=`) to receive only later epochs. One shared poller per server process reads the "
    "database at most once per TRAINCTL_EVENTS_POLL_INTERVAL seconds (default 1) for every open stream; "
    "a `: keep-alive` comment is sent every TRAINCTL_EVENTS_KEEPALIVE seconds (default 15).\n\n"
    f"```\n{EXAMPLE_STREAM}```",
    response_class=StreamingResponse,
    responses=problem_responses(
        404,
        success={
            "content": {"text/event-stream": {"schema": {"type": "string"}, "example": EXAMPLE_STREAM}},
            "description": "Events.",
        },
    ),
)
async def get_events(
    job_id: JobId,
    request: Request,
    owner: OwnerDep,
    session: SessionDep,
    settings: SettingsDep,
    last_event_id: Annotated[
        int | None,
        Header(alias="Last-Event-ID", ge=0, le=10_000_000, description="Resume after this epoch."),
    ] = None,
    after: Annotated[
        int | None,
        Query(
            alias="last_event_id",
            ge=0,
            le=10_000_000,
            description="Resume after this epoch (for clients that cannot set headers).",
        ),
    ] = None,
) -> StreamingResponse:
    """Stream a job's events."""
    await asyncio.to_thread(owned_job, session, owner=owner, job_id=job_id)  # 404 before streaming
    start = last_event_id if last_event_id is not None else (after or 0)
    return StreamingResponse(
        _stream(event_hub(request), job_id=job_id, after=start, keepalive=settings.events_keepalive),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )
