"""Response shapes of the compare API."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field

from api.compare.analysis import CompareWarning
from api.compare.bands import Band
from api.compare.effects import Effects
from api.compare.stats import PairTest, Summary
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


class CompareGroup(BaseModel):
    """Jobs with the same spec but for training.seed: repeats of one configuration."""

    key: dict[str, Any] = Field(
        description="The group's differing fields (differs without training.seed).",
        examples=[{"activation": "sigmoid", "normalization.layers": "batch"}],
    )
    job_ids: list[str]
    n: int = Field(description="Jobs in the group, whatever their status.")
    seeds: list[int] = Field(description="training.seed of the group's succeeded jobs (those counted).")
    excluded: dict[str, int] = Field(
        description="Jobs left out of the statistics by status (running, failed, ...): only succeeded "
        "jobs count.",
        examples=[{"running": 1}],
    )
    metrics: dict[str, Summary] = Field(
        description="Over the succeeded jobs: the chosen metric at each job's best epoch, each test metric, "
        "seconds, and with a target, epochs_to_target (over the jobs that reached it: its n says how many).",
        examples=[
            {
                "val_loss": {
                    "n": 3,
                    "mean": 0.31,
                    "std": 0.02,
                    "ci_low": 0.26,
                    "ci_high": 0.36,
                    "median": 0.30,
                    "min": 0.29,
                    "max": 0.33,
                }
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
    alpha: float = Field(description="Significance level of the verdicts and of the seeds-needed estimates.")
    tests: list[PairTest] = Field(
        description="The best group against each other group on `metric` (Holm-adjusted over this list)."
    )
    effects: Effects | None = Field(
        description="Main effects and two-way interactions of the swept fields when the groups form a grid "
        "over them (null when fewer than two groups or a field is missing from some group)."
    )
    warnings: list[CompareWarning]
    bands: dict[str, list[Band]] = Field(
        description="Per field, one band per group (same order as `groups`): mean, 95% CI and n of the "
        "group's succeeded jobs at each exact epoch; at most `points` epochs, the same ones for every group."
    )
    curves: dict[str, dict[str, list[tuple[int, float]]]] | None = Field(
        description="With `job_curves=true`: per job, per field, [[epoch, value], ...] at the epochs of "
        "`bands` (null otherwise).",
        examples=[{"job_3f9c1a2b4d5e6f70": {"val_loss": [[1, 1.02], [2, 0.71], [3, 0.55]]}}],
    )
