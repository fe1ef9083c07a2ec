"""Response shapes of the compare API."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field

from core.models import JobStatus
from training.records import EpochRecord

EXAMPLE_COMMON = {"dataset.name": "iris", "network.hidden_layers": [16], "optimizer.name": "adam"}


class ComparedJob(BaseModel):
    """One compared job: what sets it apart from the others, and how it did."""

    id: str = Field(examples=["job_3f9c1a2b4d5e6f70"])
    name: str | None
    status: JobStatus
    differs: dict[str, Any] = Field(
        description="Spec fields (dotted paths) where this job differs from `common`.",
        examples=[{"activation": "sigmoid", "training.seed": 1}],
    )
    best: EpochRecord | None = Field(description="Metrics of the best epoch (null until finished).")
    final: EpochRecord | None = Field(description="Metrics of the last epoch.")
    test: dict[str, Any] | None = Field(description="Metrics on the held-out test split.")
    best_epoch: int | None
    epochs_run: int | None
    stopped_early: bool | None
    epochs_to_target: int | None = Field(
        description="First epoch whose record meets `target` (null without a target, or if never)."
    )
    seconds: float | None = Field(description="Training time.")


class MetricStats(BaseModel):
    """Mean and sample standard deviation (n - 1; 0 when n = 1) over a group's jobs that have the metric."""

    mean: float | None
    std: float | None
    n: int


class CompareGroup(BaseModel):
    """Jobs with the same spec but for training.seed: repeats of one configuration."""

    key: dict[str, Any] = Field(
        description="The group's differing fields (differs without training.seed).",
        examples=[{"activation": "sigmoid", "normalization.layers": "batch"}],
    )
    job_ids: list[str]
    n: int = Field(description="Jobs in the group.")
    metrics: dict[str, MetricStats] = Field(
        description="The chosen metric at each job's best epoch, each test metric, seconds, and with a "
        "target, epochs_to_target (over the jobs that reached it: its n says how many did).",
        examples=[
            {
                "val_loss": {"mean": 0.31, "std": 0.02, "n": 3},
                "test_accuracy": {"mean": 0.93, "std": 0.01, "n": 3},
            }
        ],
    )


class Comparison(BaseModel):
    """Jobs side by side: shared spec once, per-job differences and results, seed groups, curves."""

    metric: str = Field(examples=["val_loss"])
    mode: Literal["min", "max"]
    target: str | None = Field(examples=["val_loss<0.3"])
    common: dict[str, Any] = Field(
        description="Spec fields (dotted paths) equal in every compared job.", examples=[EXAMPLE_COMMON]
    )
    jobs: list[ComparedJob]
    groups: list[CompareGroup]
    best_group: int | None = Field(
        description="Index in `groups` of the best group by `metric` and `mode` (null when no job has it)."
    )
    best_within_noise: bool | None = Field(
        description="True when the best group's mean ± std overlaps the runner-up's: its lead may be noise. "
        "Null with fewer than two groups that have the metric."
    )
    curves: dict[str, dict[str, list[tuple[int, float]]]] = Field(
        description="Per job, per field: [[epoch, value], ...], at most `points` pairs per curve "
        "(each bucket keeps its min and max, so spikes survive).",
        examples=[{"job_3f9c1a2b4d5e6f70": {"val_loss": [[1, 1.02], [2, 0.71], [3, 0.55]]}}],
    )
