"""Shapes of the datasets API."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field

from api.schema_types import UtcDateTime
from training.spec import Task


class DatasetOut(BaseModel):
    """An uploaded dataset; refer to it from a spec as {"dataset": {"id": ...}}."""

    id: str = Field(examples=["ds_4f1c2a9b0d3e5f60"])
    filename: str = Field(description="The name the file was uploaded with (display only).")
    format: Literal["csv", "npz"]
    rows: int
    columns: int = Field(description="Features per example (per time step for sequences); no target.")
    example_shape: list[int] = Field(description="Shape of one example: [features] or [steps, features].")
    task: Task
    classes: int | None = Field(description="Number of classes, for classification.")
    target: str | None = Field(description="CSV target column asked for (null: the last column).")
    size_bytes: int
    created_at: UtcDateTime


class DatasetList(BaseModel):
    """The owner's datasets, newest first."""

    items: list[DatasetOut]
