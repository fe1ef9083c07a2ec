"""Request and response shapes of the sweeps API."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from api.jobs.schemas import MAX_NOTES, MAX_TAGS, PRINTABLE, Notes, Tag
from api.schema_types import UtcDateTime
from core.models import JobStatus
from training.spec import EXAMPLE_SPEC, JobSpec

DOTTED_PATH = r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*$"
MAX_GRID_PATHS = 10
MAX_GRID_VALUES = 100
MAX_SEEDS = 100
GridPath = Annotated[str, StringConstraints(min_length=1, max_length=200, pattern=DOTTED_PATH)]
GridValues = Annotated[list[Any], Field(max_length=MAX_GRID_VALUES)]

EXAMPLE_GRID = {"activation": ["sigmoid", "relu"], "normalization.layers": ["none", "batch"]}
EXAMPLE_SWEEP: dict[str, Any] = {
    "name": "activation-x-batchnorm",
    "base": EXAMPLE_SPEC,
    "grid": EXAMPLE_GRID,
    "seeds": 3,
    "tags": ["demo"],
}


class SweepCreate(BaseModel):
    """A base spec, a grid of values by dotted path, and how many seeds to run each grid point with."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [EXAMPLE_SWEEP]})

    name: str = Field(min_length=1, max_length=200, pattern=PRINTABLE, description="A label for people.")
    base: JobSpec = Field(description="The spec every job starts from.")
    grid: dict[GridPath, GridValues] = Field(
        default_factory=dict,
        max_length=MAX_GRID_PATHS,
        description="Dotted paths into the spec and the values to try, e.g. "
        '{"activation": ["sigmoid", "relu"], "optimizer.learning_rate": [0.01, 0.1]}. '
        f"Every combination is run. At most {MAX_GRID_PATHS} paths of {MAX_GRID_VALUES} values each.",
        examples=[EXAMPLE_GRID],
    )
    seeds: int = Field(
        1,
        ge=1,
        le=MAX_SEEDS,
        description="Runs per grid point, with training.seed = base seed + 0, 1, ... seeds - 1.",
    )
    tags: list[Tag] = Field(default_factory=list, max_length=MAX_TAGS, description="Tags of every job.")


class SweepUpdate(BaseModel):
    """What PATCH changes: name, tags (the whole list; its jobs get them too) and notes."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [{"tags": ["batchnorm-study"], "notes": "BN rescues sigmoid at depth 8."}]
        },
    )

    name: str | None = Field(
        None, min_length=1, max_length=200, pattern=PRINTABLE, description="A label for people."
    )
    tags: list[Tag] | None = Field(
        None,
        max_length=MAX_TAGS,
        description="The sweep's new tags: each of its jobs loses the sweep's old tags and gets these.",
    )
    notes: Notes | None = Field(None, description=f"Free text for people (at most {MAX_NOTES} characters).")


class SweepJob(BaseModel):
    """One job of a sweep and the values it was made with."""

    id: str = Field(examples=["job_3f9c1a2b4d5e6f70"])
    status: JobStatus
    params: dict[str, Any] = Field(
        description="The grid values of this job by dotted path, with training.seed.",
        examples=[{"activation": "relu", "normalization.layers": "batch", "training.seed": 1}],
    )
    seed: int = Field(description="Its training.seed.")


class SweepSummary(BaseModel):
    """A sweep as listed."""

    id: str = Field(examples=["sw_0a1b2c3d4e5f6789"])
    name: str
    created_at: UtcDateTime
    grid: dict[str, list[Any]]
    seeds: int
    size: int = Field(description="Jobs in the sweep: grid points × seeds.")
    counts: dict[JobStatus, int] = Field(
        description="Jobs by status (every status, zeros included).",
        examples=[{"queued": 8, "running": 2, "succeeded": 2, "failed": 0, "cancelled": 0}],
    )
    tags: list[str] = Field(default_factory=list, description="The tags its jobs were given.")
    notes: str | None = Field(None, description="Free text for people (PATCH sets it).")


class SweepDetail(SweepSummary):
    """A sweep with its jobs, in grid order (seeds innermost)."""

    base: JobSpec = Field(description="The base spec, normalized.")
    jobs: list[SweepJob]


class SweepPage(BaseModel):
    """One page of sweeps, newest first."""

    items: list[SweepSummary]
    next_cursor: str | None = Field(description="Pass as ?cursor= for the next page; null on the last page.")


class SeedsRequest(BaseModel):
    """How many seeds every grid point should have."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{"seeds": 5}]})

    seeds: int = Field(
        ge=1,
        le=MAX_SEEDS,
        description="Seeds per grid point in total (base seed + 0 … seeds − 1); only the missing ones run.",
    )


class SeedsAdded(SweepDetail):
    """The sweep after adding seeds, with the jobs just created."""

    added: list[str] = Field(description="Ids of the jobs created (empty when no seed was missing).")
