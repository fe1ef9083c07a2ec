"""A comparison as CSV: one flat row per job."""

from __future__ import annotations

import csv
import io
import json
from typing import Any

from pydantic import BaseModel

from api.compare.schemas import ComparedJob, Comparison


def _cell(value: Any) -> Any:
    return json.dumps(value) if isinstance(value, list | dict) else value


def _metrics(job: ComparedJob, part: str) -> dict[str, Any]:
    """A job's best, final or test metrics as {name: value} (measured values only)."""
    value = getattr(job, part)
    if isinstance(value, BaseModel):
        return {name: measure for name, measure in value.model_dump().items() if measure not in (None, [])}
    return dict(value or {})


def comparison_csv(comparison: Comparison) -> str:
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
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns, restval="", lineterminator="\n")
    writer.writeheader()
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
        writer.writerow(row)
    return buffer.getvalue()
