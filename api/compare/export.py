"""A comparison as CSV: one flat table of jobs, groups (with their tests), effects or bands."""

from __future__ import annotations

import json
from typing import Any, Literal

from pydantic import BaseModel

from api.compare.schemas import ComparedJob, Comparison
from api.csv_export import csv_text

Table = Literal["jobs", "groups", "effects", "bands"]


def filename(table: Table) -> str:
    """The download's name: compare.csv for jobs, compare-<table>.csv otherwise."""
    return "compare.csv" if table == "jobs" else f"compare-{table}.csv"


def _cell(value: Any) -> Any:
    return json.dumps(value) if isinstance(value, list | dict) else value


def _metrics(job: ComparedJob, part: str) -> dict[str, Any]:
    """A job's best, final or test metrics as {name: value} (measured values only)."""
    value = getattr(job, part)
    if isinstance(value, BaseModel):
        return {name: measure for name, measure in value.model_dump().items() if measure not in (None, [])}
    return dict(value or {})


def _write(columns: list[str], rows: list[dict[str, Any]]) -> str:
    """The table as CSV text: lists and dicts as JSON, every text cell neutralized."""
    return csv_text(columns, ({name: _cell(value) for name, value in row.items()} for row in rows))


def groups_csv(comparison: Comparison) -> str:
    """One row per group: its fields, n, seeds, excluded jobs, every summary of every metric, its test."""
    tests = {test.other: test for test in comparison.tests}
    rows = []
    for index, group in enumerate(comparison.groups):
        row: dict[str, Any] = {"group": index, "best": index == comparison.best_group, **group.key}
        row.update(n=group.n, seeds=group.seeds, excluded=group.excluded)
        for name, summary in group.metrics.items():
            row.update({f"{name}.{part}": value for part, value in summary.model_dump().items()})
        test = tests.get(index)
        if test is not None:
            row.update({f"vs_best.{part}": value for part, value in test.model_dump().items()})
        rows.append(row)
    columns = list(dict.fromkeys(name for row in rows for name in row))
    return _write(columns, rows)


def effects_csv(comparison: Comparison) -> str:
    """One row per effect: term, contrast, levels, estimate, se, 95% CI (residual df and n repeated)."""
    effects = comparison.effects
    columns = ["term", "contrast", "levels", "estimate", "se", "ci_low", "ci_high", "residual_df", "n"]
    if effects is None:
        return _write(columns, [])
    shared = {"residual_df": effects.residual_df, "n": effects.n}
    return _write(
        columns, [{**effect.model_dump(exclude={"fields"}), **shared} for effect in effects.effects]
    )


def bands_csv(comparison: Comparison) -> str:
    """One row per group, field and epoch: mean, 95% CI and n."""
    rows = [
        {"group": index, "field": name, "epoch": epoch, "mean": mean, "ci_low": low, "ci_high": high, "n": n}
        for name, bands in comparison.bands.items()
        for index, band in enumerate(bands)
        for epoch, mean, low, high, n in zip(
            band.epochs, band.mean, band.ci_low, band.ci_high, band.n, strict=True
        )
    ]
    return _write(["group", "field", "epoch", "mean", "ci_low", "ci_high", "n"], rows)


def comparison_csv(comparison: Comparison, table: Table = "jobs") -> str:
    """The chosen table as CSV."""
    if table == "groups":
        return groups_csv(comparison)
    if table == "effects":
        return effects_csv(comparison)
    if table == "bands":
        return bands_csv(comparison)
    return jobs_csv(comparison)


def jobs_csv(comparison: Comparison) -> str:
    """One row per job: id, name, status, the differing fields, then best/final/test metrics."""
    differ_columns = list(dict.fromkeys(path for job in comparison.jobs for path in job.differs))
    metric_columns: dict[str, None] = {}
    for part in ("best", "final", "test"):
        for job in comparison.jobs:
            for name in _metrics(job, part):
                metric_columns[f"{part}.{name}"] = None
    columns = [
        "id",
        "name",
        "status",
        *differ_columns,
        "best_epoch",
        "epochs_run",
        "stopped_early",
        "epochs_to_target",
        "seconds",
        *metric_columns,
    ]
    rows: list[dict[str, Any]] = []
    for job in comparison.jobs:
        row: dict[str, Any] = {"id": job.id, "name": job.name, "status": job.status.value}
        row.update({path: _cell(value) for path, value in job.differs.items()})
        row.update(
            best_epoch=job.best_epoch,
            epochs_run=job.epochs_run,
            stopped_early=job.stopped_early,
            epochs_to_target=job.epochs_to_target,
            seconds=job.seconds,
        )
        for part in ("best", "final", "test"):
            for name, value in _metrics(job, part).items():
                row[f"{part}.{name}"] = _cell(value)
        rows.append(row)
    return csv_text(columns, rows)
