"""Health report shapes."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field

from api.schema_types import UtcDateTime


class DependencyCheck(BaseModel):
    """One dependency's state."""

    ok: bool
    detail: str = Field(description="What was checked, or why it failed.")


class WorkerSeen(BaseModel):
    """A worker that sent a heartbeat recently."""

    name: str
    device: str
    queues: list[str]
    current_job_id: str | None = Field(description="The job it runs, shown to that job's owner only.")
    last_seen: UtcDateTime


class HealthReport(BaseModel):
    """The service's health: 200 when the database answers, else 503."""

    status: Literal["ok", "degraded", "unavailable"] = Field(
        description="ok: all good; degraded: database fine but broker down or no worker seen; "
        "unavailable: no database."
    )
    database: DependencyCheck
    broker: DependencyCheck
    workers: list[WorkerSeen]
