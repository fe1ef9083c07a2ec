"""Comparing jobs: spec diff, seed groups with mean ± std, targets and downsampled curves (no FastAPI)."""

from __future__ import annotations

import json
import math
import operator
import re
import statistics
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from sqlalchemy import ColumnElement, case, func, select
from sqlalchemy.dialects.postgresql import aggregate_order_by, array_agg
from sqlalchemy.orm import Session

from api.compare.schemas import ComparedJob, CompareGroup, Comparison, MetricStats
from api.csv_export import csv_text
from api.errors import NotFound, Unprocessable
from api.models import EpochMetric, Job, JobStatus, Sweep
from api.sweeps.service import grid_order

SEED_PATH = "training.seed"
MAX_COMPARE_JOBS = 1000
DEFAULT_FIELDS = ("train_loss", "val_loss")
FIELD_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,99}$")
_TARGET = re.compile(
    r"^\s*([A-Za-z_][A-Za-z0-9_]*)\s*(<=|>=|<|>)\s*([-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)\s*$"
)
_COMPARE_OPS: dict[str, Callable[[float, float], bool]] = {
    "<": operator.lt,
    "<=": operator.le,
    ">": operator.gt,
    ">=": operator.ge,
}

Mode = Literal["min", "max"]
Curve = list[tuple[int, float]]


@dataclass(frozen=True)
class Target:
    """A condition on one per-epoch field, e.g. val_loss < 0.3."""

    field: str
    op: str
    value: float

    def met(self, value: float) -> bool:
        """Whether `value` meets the condition."""
        return _COMPARE_OPS[self.op](value, self.value)

    def __str__(self) -> str:
        return f"{self.field}{self.op}{self.value:g}"


def parse_target(text: str) -> Target:
    """`val_loss<0.3`, `val_accuracy>=0.9`; 422 naming `target` otherwise."""
    match = _TARGET.match(text)
    if match is None:
        raise Unprocessable.for_field(
            "target", f"{text!r} is not a condition like val_loss<0.3 or val_accuracy>=0.9 (<, <=, >, >=)"
        )
    return Target(field=match[1], op=match[2], value=float(match[3]))


def default_mode(metric: str) -> Mode:
    """Accuracy is maximized; losses, rmse and anything else are minimized."""
    return "max" if metric.endswith("accuracy") else "min"


def parse_fields(text: str | None) -> list[str]:
    """Curve fields from a comma-separated list (default train_loss,val_loss); 422 for odd names."""
    if not text:
        return list(DEFAULT_FIELDS)
    fields = list(dict.fromkeys(part.strip() for part in text.split(",") if part.strip()))
    for field in fields:
        if not FIELD_NAME.match(field) or field == "layers":
            raise Unprocessable.for_field("fields", f"{field!r} is not a per-epoch metric name like val_loss")
    if not fields or len(fields) > 20:
        raise Unprocessable.for_field("fields", "name between 1 and 20 per-epoch fields")
    return fields


def flatten(value: Any, prefix: str = "") -> dict[str, Any]:
    """A spec as {dotted path: leaf}; lists and empty objects are leaves."""
    if isinstance(value, dict) and value:
        flat: dict[str, Any] = {}
        for key, child in value.items():
            flat.update(flatten(child, f"{prefix}{key}."))
        return flat
    return {prefix.rstrip("."): value}


def _canonical(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"))


def spec_diff(specs: Sequence[dict[str, Any]]) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """(common, differs): fields equal in every spec once, and per spec only the fields where it differs."""
    flats = [flatten(spec) for spec in specs]
    if not flats:
        return {}, []
    # Plain equality: every spec went through the same schema, so a path holds the same kind of value.
    common = {
        path: value
        for path, value in flats[0].items()
        if all(path in flat and flat[path] == value for flat in flats[1:])
    }
    return common, [{path: value for path, value in flat.items() if path not in common} for flat in flats]


def downsample(curve: Curve, points: int | None) -> Curve:
    """At most `points` pairs: the curve split into points // 2 buckets, each keeping its min and max."""
    if points is None or len(curve) <= points:
        return curve
    buckets = max(points // 2, 1)
    size = len(curve) / buckets
    kept: Curve = []
    for bucket in range(buckets):
        chunk = curve[int(bucket * size) : int((bucket + 1) * size)]
        if not chunk:
            continue
        low = min(chunk, key=lambda pair: pair[1])
        high = max(chunk, key=lambda pair: pair[1])
        kept.extend(sorted({low, high}))
    return kept


def mean_std(values: Sequence[float]) -> MetricStats:
    """Mean and sample standard deviation (n - 1), 0 for a single value."""
    if not values:
        return MetricStats(mean=None, std=None, n=0)
    std = statistics.stdev(values) if len(values) >= 2 else 0.0
    return MetricStats(mean=statistics.fmean(values), std=std, n=len(values))


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value) if math.isfinite(value) else None


def _selected_jobs(
    session: Session, *, owner: str, job_ids: list[str] | None, sweep_id: str | None
) -> list[Job]:
    """The owner's jobs named by id (in that order) or made by the sweep (in grid order); 404 otherwise."""
    if (job_ids is None) == (sweep_id is None):
        raise Unprocessable.for_field("jobs", "give either jobs=ID,ID,... or sweep=ID")
    columns = select(Job).where(Job.owner == owner)
    if sweep_id is not None:
        sweep = session.scalar(select(Sweep).where(Sweep.id == sweep_id, Sweep.owner == owner))
        if sweep is None:
            raise NotFound(f"no sweep with id {sweep_id!r}")
        jobs = list(session.scalars(columns.where(Job.sweep_id == sweep_id)))
        if not jobs:
            raise NotFound(f"sweep {sweep_id} has no jobs left to compare")
        return sorted(jobs, key=lambda job: grid_order(sweep, job.sweep_params or {}))
    assert job_ids is not None
    wanted = list(dict.fromkeys(job_ids))
    if not wanted:
        raise Unprocessable.for_field("jobs", "name at least one job id")
    if len(wanted) > MAX_COMPARE_JOBS:
        raise Unprocessable.for_field("jobs", f"compare at most {MAX_COMPARE_JOBS} jobs at once")
    found = {job.id: job for job in session.scalars(columns.where(Job.id.in_(wanted)))}
    missing = [job_id for job_id in wanted if job_id not in found]
    if missing:
        raise NotFound(f"no job with id {', '.join(repr(job_id) for job_id in missing[:5])}")
    return [found[job_id] for job_id in wanted]


def numeric_field(dialect: str, field: str) -> ColumnElement[Any]:
    """SQL for one top-level number of a record (NULL when absent or not a number), per backend."""
    if dialect == "postgresql":
        # JSONB: no text to re-parse per row, and ->> cast to float skips JSON decoding in Python.
        value = EpochMetric.record[field]
        return case((func.jsonb_typeof(value) == "number", value.as_float()))
    if dialect == "sqlite":
        return func.json_extract(EpochMetric.record, f'$."{field}"')  # numbers come back as numbers
    return EpochMetric.record[field]


def read_curves(session: Session, *, job_ids: list[str], fields: list[str]) -> dict[str, dict[str, Curve]]:
    """{job: {field: [(epoch, value)]}} for finite numbers, in ONE query that extracts only these fields."""
    curves: dict[str, dict[str, Curve]] = {job_id: {field: [] for field in fields} for job_id in job_ids}
    if not job_ids or not fields:
        return curves
    dialect = session.get_bind().dialect.name
    values = [numeric_field(dialect, field) for field in fields]
    selected = EpochMetric.job_id.in_(job_ids)
    if dialect == "postgresql":
        # One row per job with arrays: a hundred times fewer rows to send and to turn into Python objects.
        by_epoch = [array_agg(aggregate_order_by(value, EpochMetric.epoch)) for value in values]
        epochs = array_agg(aggregate_order_by(EpochMetric.epoch, EpochMetric.epoch))
        query = select(EpochMetric.job_id, epochs, *by_epoch).where(selected).group_by(EpochMetric.job_id)
        for job_id, job_epochs, *columns in session.execute(query):
            per_job = curves[job_id]
            for field, column in zip(fields, columns, strict=True):
                # The SQL already kept numbers only (a JSONB number is finite): just drop the NULLs.
                per_job[field] = [
                    (epoch, value)
                    for epoch, value in zip(job_epochs, column, strict=True)
                    if value is not None
                ]
        return curves
    query = (
        select(EpochMetric.job_id, EpochMetric.epoch, *values)
        .where(selected)
        .order_by(EpochMetric.job_id, EpochMetric.epoch)
    )
    for job_id, epoch, *row in session.execute(query):
        per_job = curves[job_id]
        for field, value in zip(fields, row, strict=True):
            number = _number(value)
            if number is not None:
                per_job[field].append((epoch, number))
    return curves


def compare_jobs(
    session: Session,
    *,
    owner: str,
    job_ids: list[str] | None = None,
    sweep_id: str | None = None,
    metric: str = "val_loss",
    mode: Mode | None = None,
    target: str | None = None,
    fields: list[str] | None = None,
    points: int | None = 200,
) -> Comparison:
    """The owner's jobs side by side; see the Comparison schema."""
    if not FIELD_NAME.match(metric):
        raise Unprocessable.for_field("metric", f"{metric!r} is not a metric name like val_loss")
    mode = mode or default_mode(metric)
    fields = list(DEFAULT_FIELDS) if fields is None else fields
    goal = parse_target(target) if target else None
    jobs = _selected_jobs(session, owner=owner, job_ids=job_ids, sweep_id=sweep_id)
    wanted = list(dict.fromkeys([*fields, *([goal.field] if goal else [])]))
    raw_curves = read_curves(session, job_ids=[job.id for job in jobs], fields=wanted)
    common, differs = spec_diff([job.spec for job in jobs])

    compared = []
    for job, diff in zip(jobs, differs, strict=True):
        result = job.result or {}
        reached = None
        if goal is not None:
            reached = next(
                (epoch for epoch, value in raw_curves[job.id][goal.field] if goal.met(value)), None
            )
        compared.append(
            ComparedJob(
                id=job.id,
                name=job.name,
                status=JobStatus(job.status),
                differs=diff,
                best=result.get("best"),
                final=result.get("final"),
                test=result.get("test"),
                best_epoch=result.get("best_epoch"),
                epochs_run=result.get("epochs_run"),
                stopped_early=result.get("stopped_early"),
                epochs_to_target=reached,
                seconds=result.get("seconds"),
            )
        )
    groups = group_jobs(compared, metric=metric, with_target=goal is not None)
    best_group, within_noise = pick_best(groups, metric=metric, mode=mode)
    curves = {
        job_id: {field: downsample(per_job[field], points) for field in fields}
        for job_id, per_job in raw_curves.items()
    }
    return Comparison(
        metric=metric,
        mode=mode,
        target=str(goal) if goal else None,
        common=common,
        jobs=compared,
        groups=groups,
        best_group=best_group,
        best_within_noise=within_noise,
        curves=curves,
    )


def group_jobs(jobs: list[ComparedJob], *, metric: str, with_target: bool = False) -> list[CompareGroup]:
    """Jobs grouped by their differing fields without the seed, in order of first appearance.

    With a target, epochs_to_target is summarized over the jobs that reached it (its n says how many).
    """
    members: dict[str, tuple[dict[str, Any], list[ComparedJob]]] = {}
    for job in jobs:
        key = {path: value for path, value in job.differs.items() if path != SEED_PATH}
        members.setdefault(_canonical(key), (key, []))[1].append(job)
    groups = []
    for key, group in members.values():
        names = [metric, *dict.fromkeys(name for job in group for name in (job.test or {}))]
        extra = ["seconds", "epochs_to_target"] if with_target else ["seconds"]
        values: dict[str, list[float]] = {name: [] for name in [*names, *extra]}
        for job in group:
            sources = {
                metric: (job.best or {}).get(metric),
                "seconds": job.seconds,
                "epochs_to_target": job.epochs_to_target,
                **(job.test or {}),
            }
            for name in values:
                number = _number(sources.get(name))
                if number is not None:
                    values[name].append(number)
        groups.append(
            CompareGroup(
                key=key,
                job_ids=[job.id for job in group],
                n=len(group),
                metrics={name: mean_std(found) for name, found in values.items()},
            )
        )
    return groups


def pick_best(groups: list[CompareGroup], *, metric: str, mode: Mode) -> tuple[int | None, bool | None]:
    """(index of the best group by its mean metric, whether its mean ± std overlaps the runner-up's)."""
    scored = [
        (index, stats)
        for index, group in enumerate(groups)
        if (stats := group.metrics.get(metric)) is not None and stats.mean is not None
    ]
    if not scored:
        return None, None
    sign = 1.0 if mode == "min" else -1.0
    scored.sort(key=lambda item: sign * (item[1].mean or 0.0))
    best_index, best = scored[0]
    if len(scored) < 2:
        return best_index, None
    runner_up = scored[1][1]
    assert best.mean is not None and runner_up.mean is not None
    overlap = abs(best.mean - runner_up.mean) <= (best.std or 0.0) + (runner_up.std or 0.0)
    return best_index, overlap


def _cell(value: Any) -> Any:
    return json.dumps(value) if isinstance(value, list | dict) else value


def comparison_csv(comparison: Comparison) -> str:
    """One row per job: id, name, status, the differing fields, then best/final/test metrics."""
    differ_columns = list(dict.fromkeys(path for job in comparison.jobs for path in job.differs))
    metric_columns: dict[str, None] = {}
    for part in ("best", "final", "test"):
        for job in comparison.jobs:
            for name in getattr(job, part) or {}:
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
            for name, value in (getattr(job, part) or {}).items():
                row[f"{part}.{name}"] = _cell(value)
        rows.append(row)
    return csv_text(columns, rows)
