"""GET /v1/workers."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from api.deps import OwnerDep, SessionDep, SettingsDep
from api.errors import problem_responses
from api.workers.schemas import WorkerList
from api.workers.service import list_workers

router = APIRouter(prefix="/v1/workers", tags=["workers"])


@router.get(
    "",
    operation_id="list_workers",
    summary="List workers",
    description="The Celery workers whose training processes sent a heartbeat within `seen_within` seconds: "
    "host, pid, queues, device, concurrency, the jobs they train now and when they were last seen. Read "
    "from the heartbeats in the database, so it works on every broker (Celery's own inspection needs "
    "broadcast, which the embedded default broker lacks).",
    response_model=WorkerList,
    responses=problem_responses(),
)
def get_workers(
    _owner: OwnerDep,
    session: SessionDep,
    settings: SettingsDep,
    seen_within: Annotated[
        float, Query(gt=0, le=7 * 24 * 3600, description="Window in seconds (default one hour).")
    ] = 3600.0,
) -> WorkerList:
    """List workers."""
    return list_workers(session, seen_within=seen_within, heartbeat_timeout=settings.heartbeat_timeout)
