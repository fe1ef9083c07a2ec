"""More seeds for an existing sweep: run only the (grid point, seed) pairs that have no live job."""

from __future__ import annotations

import copy
import itertools
from typing import Any

from celery import Celery
from pydantic import ValidationError
from sqlalchemy import select
from sqlalchemy.orm import Session

from api.errors import Unprocessable
from api.jobs.service import check_queue_quota, new_job_row, publish_job
from api.specs.service import check_spec
from api.sweeps.schemas import MAX_SEEDS, SeedsAdded
from api.sweeps.service import SEED_PATH, _detail, _owned_sweep, set_path, sweep_jobs
from core.config import Settings
from core.models import Job, JobStatus, Sweep
from training.spec import JobSpec

# A failed or cancelled run left no result: its seed is missing and runs again.
LIVE = {JobStatus.queued, JobStatus.running, JobStatus.succeeded}


def _point_key(params: dict[str, Any], grid: dict[str, list[Any]]) -> tuple[str, ...]:
    return tuple(repr(params.get(path)) for path in grid)


def _spec_for(sweep: Sweep, point: dict[str, Any], seed: int, template: dict[str, Any] | None) -> JobSpec:
    """The point's spec with `seed`: from a job the sweep made for the point, else from the base."""
    raw = copy.deepcopy(template) if template is not None else copy.deepcopy(sweep.base)
    if template is None:
        for path, value in point.items():
            set_path(raw, path, value)
    set_path(raw, SEED_PATH, seed)
    try:
        return JobSpec.model_validate(raw)
    except ValidationError as error:  # only if the spec schema changed since the sweep was made
        message = f"grid point {point} no longer makes a valid spec: {error}"
        raise Unprocessable.for_field("seeds", message) from None


def add_seeds(
    session: Session, *, owner: str, sweep_id: str, seeds: int, settings: Settings, celery_app: Celery
) -> SeedsAdded:
    """Give every grid point seeds base + 0 … seeds − 1, creating jobs only where no live job has the seed."""
    if not 1 <= seeds <= MAX_SEEDS:
        raise Unprocessable.for_field("seeds", f"must be between 1 and {MAX_SEEDS}")
    sweep = _owned_sweep(session, owner=owner, sweep_id=sweep_id)
    if session.get_bind().dialect.name == "postgresql":  # two concurrent requests must not both add
        session.scalar(select(Sweep).where(Sweep.id == sweep_id).with_for_update())
    points = [
        dict(zip(sweep.grid, values, strict=True)) for values in itertools.product(*sweep.grid.values())
    ]
    size = len(points) * seeds
    if size > settings.max_sweep_jobs:
        raise Unprocessable.for_field(
            "seeds",
            f"{len(points)} grid points × {seeds} seeds make {size} jobs; the limit is "
            f"{settings.max_sweep_jobs} (TRAINCTL_MAX_SWEEP_JOBS)",
        )
    jobs = sweep_jobs(session, sweep_id=sweep_id)
    live: set[tuple[tuple[str, ...], int]] = set()
    templates: dict[tuple[str, ...], Job] = {}
    for job in jobs:
        key = _point_key(job.sweep_params or {}, sweep.grid)
        templates.setdefault(key, job)
        if job.status in LIVE:
            live.add((key, int((job.sweep_params or {}).get(SEED_PATH, 0))))
    base_seed = int(sweep.base.get("training", {}).get("seed", 0))
    added = []
    for point in points:
        key = _point_key(point, sweep.grid)
        template = templates.get(key)
        checked = None
        for seed in range(base_seed, base_seed + seeds):
            if (key, seed) in live:
                continue
            spec = _spec_for(sweep, point, seed, template.spec if template is not None else None)
            if checked is None:  # seeds change neither the data shape, the limits nor the lint
                checked = check_spec(session, owner=owner, spec=spec, settings=settings)[2]
            added.append(
                new_job_row(
                    owner=owner,
                    name=sweep.name,
                    tags=[tag.tag for tag in template.tags] if template is not None else [],
                    spec=spec,
                    warnings=checked,
                    sweep_id=sweep.id,
                    sweep_params={**point, SEED_PATH: seed},
                )
            )
    check_queue_quota(session, owner=owner, settings=settings, adding=len(added))
    sweep.seeds = max(sweep.seeds, seeds)
    session.add_all(added)
    session.commit()
    for job in added:
        publish_job(celery_app, job, settings=settings)
    detail = _detail(sweep, sweep_jobs(session, sweep_id=sweep_id))
    return SeedsAdded(**dict(detail), added=[job.id for job in added])
