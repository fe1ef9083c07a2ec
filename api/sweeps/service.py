"""Creating, listing, reading and cancelling sweeps (no FastAPI here)."""

from __future__ import annotations

import copy
import itertools
import math
import secrets
from collections import Counter
from pathlib import Path
from typing import Any

from celery import Celery
from pydantic import ValidationError
from sqlalchemy import and_, func, or_, select
from sqlalchemy.orm import Session

from api.errors import Conflict, NotFound, Unprocessable
from api.jobs.service import (
    MAX_PAGE_SIZE,
    check_queue_quota,
    decode_cursor,
    delete_job_files,
    delete_job_rows,
    encode_cursor,
    new_job_row,
    request_cancel,
    set_tags,
)
from api.specs.service import check_spec
from api.storage import check_jobs_fit
from api.sweeps.replicas import assign_groups, publish_groups
from api.sweeps.schemas import SweepCreate, SweepDetail, SweepJob, SweepPage, SweepSummary, SweepUpdate
from core.artifacts import ArtifactStore
from core.config import Settings
from core.models import Job, JobStatus, Sweep
from core.models.job import FINISHED
from training.spec import FieldError, JobSpec, SpecWarning, describe_errors

SEED_PATH = "training.seed"


def new_sweep_id() -> str:
    """A random, URL-safe sweep id."""
    return "sw_" + secrets.token_hex(8)


def set_path(spec: dict[str, Any], path: str, value: Any) -> None:
    """Set a dotted path in a spec's JSON, creating missing objects on the way (values are not copied)."""
    parts = path.split(".")
    node = spec
    for depth, part in enumerate(parts[:-1]):
        child = node.get(part)
        if child is None:
            child = node[part] = {}
        elif not isinstance(child, dict):
            parent = ".".join(parts[: depth + 1])
            raise Unprocessable.for_field(
                f"grid.{path}", f"{parent} is not an object, so it has no field {parts[depth + 1]!r}"
            )
        node = child
    node[parts[-1]] = copy.deepcopy(value)


def _spec_error(field: str, error: ValidationError, path: str | None = None) -> Unprocessable:
    """A 422 naming the grid entry, with the spec's own validation messages."""
    found = describe_errors(error.errors())
    same = {"spec", path}
    messages = [item.message if item.field in same else f"{item.field}: {item.message}" for item in found]
    if path is not None and all(item.message.startswith("unknown key") for item in found):
        field = f"grid.{path}"  # the path itself is wrong, whatever the value
    errors = [FieldError(field=field, message=message) for message in messages]
    return Unprocessable(f"{field}: {'; '.join(messages[:3])}", errors=errors)


def _validate(raw: dict[str, Any], field: str, path: str) -> JobSpec:
    try:
        return JobSpec.model_validate(raw)
    except ValidationError as error:
        raise _spec_error(field, error, path) from None


def _describe(params: dict[str, Any]) -> str:
    return ", ".join(f"{path}={value!r}" for path, value in params.items())


def expand_grid(
    request: SweepCreate, *, settings: Settings
) -> list[tuple[dict[str, Any], JobSpec, dict[str, Any]]]:
    """Every (grid point, spec, params) of the sweep, validated; 422 before anything is stored."""
    grid = request.grid
    if SEED_PATH in grid:
        raise Unprocessable.for_field(
            f"grid.{SEED_PATH}", "set `seeds` instead: seeds are run for every point"
        )
    for path, values in grid.items():
        if not values:
            raise Unprocessable.for_field(f"grid.{path}", "give at least one value")
    size = math.prod(len(values) for values in grid.values()) * request.seeds
    if size > settings.max_sweep_jobs:
        shape = " × ".join([*(str(len(values)) for values in grid.values()), f"{request.seeds} seeds"])
        raise Unprocessable.for_field(
            "grid",
            f"this sweep makes {size} jobs ({shape}); the limit is {settings.max_sweep_jobs} "
            "(TRAINCTL_MAX_SWEEP_JOBS): use fewer values or seeds",
        )
    # The request's own keys only: a grid value may switch a union (optimizer.name) whose defaults differ.
    base = request.base.model_dump(mode="json", exclude_unset=True)
    # Each value alone first, so a bad one is named precisely: grid.<path>[i].
    for path, values in grid.items():
        for index, value in enumerate(values):
            raw = copy.deepcopy(base)
            set_path(raw, path, value)
            _validate(raw, f"grid.{path}[{index}]", path)
    base_seed = request.base.training.seed
    expanded = []
    for combination in itertools.product(*grid.values()):
        point = dict(zip(grid, combination, strict=True))
        for offset in range(request.seeds):
            raw = copy.deepcopy(base)
            for path, value in point.items():
                set_path(raw, path, value)
            set_path(raw, SEED_PATH, base_seed + offset)
            params = {**point, SEED_PATH: base_seed + offset}
            field = "grid" if point else "seeds"
            try:
                spec = JobSpec.model_validate(raw)
            except ValidationError as error:
                problem = _spec_error(field, error)
                raise Unprocessable(
                    f"the grid point {_describe(params)} is not a valid spec: {problem.detail}",
                    errors=problem.errors,
                ) from None
            expanded.append((point, spec, params))
    return expanded


def create_sweep(
    session: Session, *, owner: str, request: SweepCreate, settings: Settings, celery_app: Celery
) -> SweepDetail:
    """Validate every spec, insert the sweep and all its jobs in one transaction, commit, then publish."""
    expanded = expand_grid(request, settings=settings)
    checked: dict[str, tuple[int, list[SpecWarning]]] = {}
    for point, spec, params in expanded:
        key = repr(point)
        if key in checked:  # seeds change neither the data shape, the limits nor the lint
            continue
        try:
            _shape, parameters, warnings = check_spec(session, owner=owner, spec=spec, settings=settings)
        except Unprocessable as error:
            raise Unprocessable(
                f"the grid point {_describe(params)}: {error.detail}", errors=error.errors
            ) from None
        checked[key] = (parameters, warnings)
    check_queue_quota(session, owner=owner, settings=settings, adding=len(expanded))
    planned = [(spec, checked[repr(point)][0]) for point, spec, _params in expanded]
    check_jobs_fit(session, owner=owner, settings=settings, jobs=planned)
    sweep = Sweep(
        id=new_sweep_id(),
        owner=owner,
        name=request.name,
        base=request.base.model_dump(mode="json"),
        grid=request.grid,
        seeds=request.seeds,
        tags=list(dict.fromkeys(request.tags)),
    )
    session.add(sweep)
    session.flush()  # the jobs refer to it; there is no relationship for the unit of work to order by
    jobs = [
        new_job_row(
            owner=owner,
            name=request.name,
            tags=request.tags,
            spec=spec,
            warnings=checked[repr(point)][1],
            sweep_id=sweep.id,
            sweep_params=params,
        )
        for point, spec, params in expanded
    ]
    sized = [(job, spec, checked[repr(pt)][0]) for job, (pt, spec, _) in zip(jobs, expanded, strict=True)]
    groups = assign_groups(sweep.id, sized, settings)
    session.add_all(jobs)
    session.commit()
    publish_groups(celery_app, groups, settings=settings)
    return _detail(sweep, jobs)


def _owned_sweep(session: Session, *, owner: str, sweep_id: str) -> Sweep:
    sweep = session.scalar(select(Sweep).where(Sweep.id == sweep_id, Sweep.owner == owner))
    if sweep is None:
        raise NotFound(f"no sweep with id {sweep_id!r}")
    return sweep


def _counts(statuses: Counter[str]) -> dict[JobStatus, int]:
    return {status: statuses.get(status, 0) for status in JobStatus}


def grid_order(sweep: Sweep, params: dict[str, Any]) -> tuple[int, ...]:
    """Sort key of a sweep job: its grid values' positions, then its seed."""
    order = []
    for path, values in sweep.grid.items():
        value = params.get(path)
        order.append(values.index(value) if value in values else len(values))
    return (*order, int(params.get(SEED_PATH, 0)))


def _size(sweep: Sweep) -> int:
    return math.prod(len(values) for values in sweep.grid.values()) * sweep.seeds


def _detail(sweep: Sweep, jobs: list[Job]) -> SweepDetail:
    ordered = sorted(jobs, key=lambda job: grid_order(sweep, job.sweep_params or {}))
    return SweepDetail(
        id=sweep.id,
        name=sweep.name,
        created_at=sweep.created_at,
        grid=sweep.grid,
        seeds=sweep.seeds,
        size=_size(sweep),
        counts=_counts(Counter(job.status for job in jobs)),
        tags=sweep.tags or [],
        notes=sweep.notes,
        base=JobSpec.model_validate(sweep.base),
        jobs=[
            SweepJob(
                id=job.id,
                status=JobStatus(job.status),
                params=job.sweep_params or {},
                seed=int(job.spec.get("training", {}).get("seed", 0)),
            )
            for job in ordered
        ],
    )


def sweep_jobs(session: Session, *, sweep_id: str) -> list[Job]:
    """The jobs a sweep made (those not deleted since)."""
    return list(session.scalars(select(Job).where(Job.sweep_id == sweep_id)))


def get_sweep(session: Session, *, owner: str, sweep_id: str) -> SweepDetail:
    """One of the owner's sweeps with its jobs."""
    sweep = _owned_sweep(session, owner=owner, sweep_id=sweep_id)
    return _detail(sweep, sweep_jobs(session, sweep_id=sweep_id))


def list_sweeps(session: Session, *, owner: str, limit: int = 20, cursor: str | None = None) -> SweepPage:
    """The owner's sweeps, newest first, one page at a time, with job counts by status."""
    if not 1 <= limit <= MAX_PAGE_SIZE:
        raise Unprocessable.for_field("limit", f"must be between 1 and {MAX_PAGE_SIZE}")
    query = select(Sweep).where(Sweep.owner == owner)
    if cursor is not None:
        created, sweep_id = decode_cursor(cursor)
        query = query.where(
            or_(Sweep.created_at < created, and_(Sweep.created_at == created, Sweep.id < sweep_id))
        )
    rows = list(session.scalars(query.order_by(Sweep.created_at.desc(), Sweep.id.desc()).limit(limit + 1)))
    page = rows[:limit]
    counts: dict[str, Counter[str]] = {sweep.id: Counter() for sweep in page}
    if page:
        grouped = session.execute(
            select(Job.sweep_id, Job.status, func.count())
            .where(Job.sweep_id.in_(list(counts)))
            .group_by(Job.sweep_id, Job.status)
        )
        for owner_sweep, status, count in grouped:
            counts[str(owner_sweep)][status] = count
    next_cursor = encode_cursor(rows[limit - 1].created_at, rows[limit - 1].id) if len(rows) > limit else None
    items = [
        SweepSummary(
            id=sweep.id,
            name=sweep.name,
            created_at=sweep.created_at,
            grid=sweep.grid,
            seeds=sweep.seeds,
            size=_size(sweep),
            counts=_counts(counts[sweep.id]),
            tags=sweep.tags or [],
            notes=sweep.notes,
        )
        for sweep in page
    ]
    return SweepPage(items=items, next_cursor=next_cursor)


def cancel_sweep(session: Session, *, owner: str, sweep_id: str) -> SweepDetail:
    """Cancel every unfinished job of the sweep: queued ones at once, running ones by flag."""
    sweep = _owned_sweep(session, owner=owner, sweep_id=sweep_id)
    request_cancel(
        session,
        Job.sweep_id == sweep_id,
        Job.owner == owner,
        reason="cancelled before it ran (its sweep was cancelled)",
    )
    session.commit()
    session.expire_all()
    return _detail(sweep, sweep_jobs(session, sweep_id=sweep_id))


def update_sweep(session: Session, *, owner: str, sweep_id: str, changes: SweepUpdate) -> SweepDetail:
    """Set the name, tags (passed on to its jobs) or notes given; the specs and results never change."""
    sweep = _owned_sweep(session, owner=owner, sweep_id=sweep_id)
    given = changes.model_fields_set
    if "name" in given:
        if changes.name is None:
            raise Unprocessable.for_field("name", "a sweep always has a name; give a new one")
        sweep.name = changes.name
    if "notes" in given:
        sweep.notes = changes.notes
    jobs = sweep_jobs(session, sweep_id=sweep_id)
    if "tags" in given:
        old, new = set(sweep.tags or []), list(dict.fromkeys(changes.tags or []))
        for job in jobs:
            set_tags(job, [*(row.tag for row in job.tags if row.tag not in old), *new])
        sweep.tags = new
    session.commit()
    return _detail(sweep, jobs)


def delete_sweep(
    session: Session, *, owner: str, sweep_id: str, artifacts: ArtifactStore, cache_dir: Path
) -> None:
    """Delete a sweep with its jobs, their rows and files; Conflict while any of its jobs is unfinished."""
    sweep = _owned_sweep(session, owner=owner, sweep_id=sweep_id)
    jobs = sweep_jobs(session, sweep_id=sweep_id)
    unfinished = [job.id for job in jobs if job.status not in FINISHED]
    if unfinished:
        raise Conflict(
            f"sweep {sweep_id} has {len(unfinished)} unfinished jobs ({', '.join(unfinished[:3])}"
            f"{', ...' if len(unfinished) > 3 else ''}); cancel it (POST /v1/sweeps/{sweep_id}/cancel) "
            "and wait for them to end"
        )
    delete_job_rows(session, jobs)
    session.delete(sweep)
    session.commit()
    delete_job_files([job.id for job in jobs], artifacts=artifacts, cache_dir=cache_dir)
