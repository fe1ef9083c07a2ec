"""Shapes of GET /v1/workers."""

from __future__ import annotations

from pydantic import BaseModel, Field

from api.schema_types import UtcDateTime


class WorkerInfo(BaseModel):
    """One Celery worker, as its training processes last reported it."""

    name: str = Field(description="The Celery worker's name (e.g. cpu-41@host).", examples=["cpu-41@gpu-box"])
    host: str | None
    pid: int | None = Field(description="The Celery worker's main process.")
    queues: list[str]
    device: str = Field(examples=["cpu", "cuda:0"])
    concurrency: int | None = Field(description="Jobs it runs at once.")
    processes: int = Field(description="Its training processes seen in the window.")
    current_jobs: list[str] = Field(description="Ids of the jobs it is training now.")
    started_at: UtcDateTime
    last_seen: UtcDateTime
    alive: bool = Field(description="Seen within twice the heartbeat timeout (TRAINCTL_HEARTBEAT_TIMEOUT).")


class WorkerList(BaseModel):
    """Workers seen within the window, most recently seen first."""

    items: list[WorkerInfo]
