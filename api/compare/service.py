"""Comparing jobs: spec diff, targets, seed groups and downsampled curves, put together (no FastAPI)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy.orm import Session

from api.compare.groups import group_jobs, pick_best
from api.compare.query import DEFAULT_FIELDS, FIELD_NAME, Mode, default_mode, parse_target
from api.compare.reads import Curve, read_curves, selected_jobs
from api.compare.schemas import ComparedJob, Comparison
from api.errors import Unprocessable
from core.models import JobStatus


def flatten(value: Any, prefix: str = "") -> dict[str, Any]:
    """A spec as {dotted path: leaf}; lists and empty objects are leaves."""
    if isinstance(value, dict) and value:
        flat: dict[str, Any] = {}
        for key, child in value.items():
            flat.update(flatten(child, f"{prefix}{key}."))
        return flat
    return {prefix.rstrip("."): value}


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
    jobs = selected_jobs(session, owner=owner, job_ids=job_ids, sweep_id=sweep_id)
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
