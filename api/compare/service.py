"""Comparing jobs: spec diff, targets, seed groups, their statistics and curve bands, put together."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy.orm import Session

from api.compare.analysis import GroupInput, Member, analyze, split_key
from api.compare.bands import Run
from api.compare.groups import SEED_PATH, finite_number, group_jobs
from api.compare.query import DEFAULT_FIELDS, FIELD_NAME, Mode, Target, default_mode, parse_target
from api.compare.reads import read_curves, selected_jobs
from api.compare.schemas import ComparedJob, Comparison
from api.errors import Unprocessable
from core.models import Job, JobStatus

DEFAULT_ALPHA = 0.05


def flatten(value: Any, prefix: str = "") -> dict[str, Any]:
    """A spec as {dotted path: leaf}; lists and empty objects are leaves."""
    flat: dict[str, Any] = {}
    _flatten_into(flat, value, prefix)
    return flat


def _flatten_into(flat: dict[str, Any], value: Any, prefix: str) -> None:
    # Into one dict: compare flattens a thousand specs, and merging a dict per level cost most of it.
    if isinstance(value, dict) and value:
        for key, child in value.items():
            _flatten_into(flat, child, f"{prefix}{key}.")
    else:
        flat[prefix.rstrip(".")] = value


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


def swept_fields(jobs: Sequence[Job]) -> list[str] | None:
    """The fields the jobs' sweeps varied; None when a job is not from a sweep (every difference counts)."""
    if not jobs or any(job.sweep_params is None for job in jobs):
        return None
    return list(dict.fromkeys(path for job in jobs for path in job.sweep_params or {} if path != SEED_PATH))


def _seed(job: Job) -> int | None:
    seed = (job.spec.get("training") or {}).get(SEED_PATH.split(".")[1])
    return seed if isinstance(seed, int) else None


def _reached(run: Run, goal: Target) -> int | None:
    """First epoch whose value meets the target."""
    return next((e for e, v in zip(*run, strict=True) if v is not None and goal.met(v)), None)


def _pairs(run: Run, kept: set[int]) -> list[tuple[int, float]]:
    return [(e, v) for e, v in zip(*run, strict=True) if v is not None and e in kept]


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
    alpha: float = DEFAULT_ALPHA,
    job_curves: bool = False,
) -> Comparison:
    """The owner's jobs side by side; see the Comparison schema."""
    if not FIELD_NAME.match(metric):
        raise Unprocessable.for_field("metric", f"{metric!r} is not a metric name like val_loss")
    if not 0 < alpha < 1:
        raise Unprocessable.for_field("alpha", "must be between 0 and 1 (exclusive), e.g. 0.05")
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
                epochs_to_target=_reached(raw_curves[job.id][goal.field], goal) if goal else None,
                seconds=result.get("seconds"),
            )
        )
    seeds = {job.id: _seed(job) for job in jobs}
    groups = group_jobs(compared, seeds=seeds, metric=metric, with_target=goal is not None)
    by_id = {job.id: job for job in jobs}
    compared_by_id = {job.id: job for job in compared}
    inputs = [
        GroupInput(
            key=group.key,
            split=split_key(by_id[group.job_ids[0]].spec),
            members=[
                Member(
                    status=job.status.value,
                    seed=seeds[job.id],
                    value=finite_number(getattr(job.best, metric, None)),
                    curves={field: raw_curves[job.id][field] for field in fields},
                )
                for job in (compared_by_id[job_id] for job_id in group.job_ids)
            ],
        )
        for group in groups
    ]
    analysis = analyze(inputs, mode=mode, alpha=alpha, swept=swept_fields(jobs), fields=fields, points=points)
    curves = None
    if job_curves:
        kept = {field: set(analysis.epochs[field]) for field in fields}
        curves = {
            job_id: {field: _pairs(per_job[field], kept[field]) for field in fields}
            for job_id, per_job in raw_curves.items()
        }
    return Comparison(
        metric=metric,
        mode=mode,
        target=str(goal) if goal else None,
        common=common,
        jobs=compared,
        groups=groups,
        best_group=analysis.best_group,
        alpha=alpha,
        tests=analysis.tests,
        effects=analysis.effects,
        warnings=analysis.warnings,
        bands=analysis.bands,
        curves=curves,
    )
