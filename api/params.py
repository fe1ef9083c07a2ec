"""Path and query parameters that several routers share (routers never import each other)."""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated

from fastapi import Path, Query

JobId = Annotated[
    str,
    Path(
        description="The job's id.",
        max_length=64,
        pattern=r"^[A-Za-z0-9_-]+$",
        examples=["job_3f9c1a2b4d5e6f70"],
    ),
]
JobsQuery = Annotated[
    str | None,
    Query(
        max_length=40_000,
        pattern=r"^[A-Za-z0-9_,-]*$",
        description="Comma-separated job ids (at most 1000). Give this or `sweep`.",
        examples=["job_3f9c1a2b4d5e6f70,job_8a7b6c5d4e3f2a10"],
    ),
]
SweepQuery = Annotated[
    str | None,
    Query(
        max_length=64,
        pattern=r"^[A-Za-z0-9_-]+$",
        description="Compare every job of this sweep. Give this or `jobs`.",
        examples=["sw_0a1b2c3d4e5f6789"],
    ),
]
MetricQuery = Annotated[
    str,
    Query(
        max_length=100,
        description="Metric that ranks groups: read at each job's best epoch.",
        examples=["val_loss"],
    ),
]
TargetQuery = Annotated[
    str | None,
    Query(
        max_length=100,
        description="A condition on a per-epoch field; each job reports the first epoch meeting it.",
        examples=["val_loss<0.3"],
    ),
]
BINARY = {"type": "string", "format": "binary"}  # what generated clients read as bytes (a file)
PNG_RESPONSE = {"content": {"image/png": {"schema": BINARY}}, "description": "A PNG image."}
CSV_RESPONSE = {"content": {"text/csv": {"schema": {"type": "string"}}}}


class OutputFormat(StrEnum):
    """How a table is answered."""

    json = "json"
    csv = "csv"


class CompareMode(StrEnum):
    """Which way is better for the ranking metric."""

    min = "min"
    max = "max"


def job_ids(jobs: str | None) -> list[str] | None:
    """The ids of a `jobs=ID,ID,...` query (None when absent)."""
    return None if jobs is None else [part.strip() for part in jobs.split(",") if part.strip()]
