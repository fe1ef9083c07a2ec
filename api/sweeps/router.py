"""/v1/sweeps: thin routes over api.sweeps.service."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query, Request, Response

from api.deps import ArtifactsDep, OwnerDep, SessionDep, SettingsDep
from api.errors import problem_responses
from api.jobs.service import MAX_PAGE_SIZE
from api.sweeps import seeds, service
from api.sweeps.schemas import SeedsAdded, SeedsRequest, SweepCreate, SweepDetail, SweepPage, SweepUpdate

router = APIRouter(prefix="/v1/sweeps", tags=["sweeps"])

SweepId = Annotated[
    str,
    Path(
        description="The sweep's id.",
        max_length=64,
        pattern=r"^[A-Za-z0-9_-]+$",
        examples=["sw_0a1b2c3d4e5f6789"],
    ),
]


@router.post(
    "",
    status_code=202,
    operation_id="create_sweep",
    summary="Start a sweep",
    description="Makes one job per grid point × seed from the base spec: each grid key is a dotted path into "
    "the spec (`activation`, `normalization.layers`, `optimizer.learning_rate`...), each value list is tried "
    "in every combination, and seed i sets `training.seed` to the base seed + i. Every generated spec is "
    "validated before anything is stored: a bad value answers 422 naming `grid.<path>[i]`. More jobs than "
    "TRAINCTL_MAX_SWEEP_JOBS (default 256) is a 422; the per-owner queued-jobs quota applies (429). All jobs "
    "are stored in one transaction, then published. Compare them with `GET /v1/compare?sweep=ID`.",
    response_model=SweepDetail,
    responses=problem_responses(429),
)
def post_sweep(
    body: SweepCreate,
    request: Request,
    response: Response,
    owner: OwnerDep,
    session: SessionDep,
    settings: SettingsDep,
) -> SweepDetail:
    """Start a sweep."""
    sweep = service.create_sweep(
        session, owner=owner, request=body, settings=settings, celery_app=request.app.state.celery
    )
    response.headers["Location"] = f"/v1/sweeps/{sweep.id}"
    return sweep


@router.get(
    "",
    operation_id="list_sweeps",
    summary="List sweeps",
    description="Your sweeps, newest first, with job counts by status. Pass `next_cursor` back as `cursor` "
    "for the next page.",
    response_model=SweepPage,
    responses=problem_responses(),
)
def get_sweeps(
    owner: OwnerDep,
    session: SessionDep,
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE_SIZE, description="Page size.")] = 20,
    cursor: Annotated[str | None, Query(max_length=500, description="From a previous page.")] = None,
) -> SweepPage:
    """List sweeps."""
    return service.list_sweeps(session, owner=owner, limit=limit, cursor=cursor)


@router.get(
    "/{sweep_id}",
    operation_id="get_sweep",
    summary="Get a sweep",
    description="The grid, seeds, base spec, job counts by status, and every job with its status, grid "
    "values (`params`) and seed, in grid order.",
    response_model=SweepDetail,
    responses=problem_responses(404),
)
def get_sweep(sweep_id: SweepId, owner: OwnerDep, session: SessionDep) -> SweepDetail:
    """Read one sweep."""
    return service.get_sweep(session, owner=owner, sweep_id=sweep_id)


@router.post(
    "/{sweep_id}/cancel",
    operation_id="cancel_sweep",
    summary="Cancel a sweep",
    description="Cancels every unfinished job of the sweep: queued jobs at once, running jobs are asked to "
    "stop (they end `cancelled` within a step or two). Finished jobs keep their results.",
    response_model=SweepDetail,
    responses=problem_responses(404),
)
def post_cancel_sweep(sweep_id: SweepId, owner: OwnerDep, session: SessionDep) -> SweepDetail:
    """Cancel a sweep."""
    return service.cancel_sweep(session, owner=owner, sweep_id=sweep_id)


@router.post(
    "/{sweep_id}/seeds",
    status_code=202,
    operation_id="add_sweep_seeds",
    summary="Add seeds to a sweep",
    description="Makes every grid point have `seeds` seeds (base seed + 0 … seeds − 1), creating jobs only "
    "for the (grid point, seed) pairs that have no queued, running or succeeded job: a failed or cancelled "
    "seed runs again, nothing runs twice. Compare's `tests[].seeds_needed` estimates how many seeds would "
    "tell two groups apart. The sweep's size limit (TRAINCTL_MAX_SWEEP_JOBS) and the queued-jobs quota "
    "(429) apply.",
    response_model=SeedsAdded,
    responses=problem_responses(404, 429),
)
def post_sweep_seeds(
    sweep_id: SweepId,
    body: SeedsRequest,
    request: Request,
    owner: OwnerDep,
    session: SessionDep,
    settings: SettingsDep,
) -> SeedsAdded:
    """Add seeds to a sweep."""
    return seeds.add_seeds(
        session,
        owner=owner,
        sweep_id=sweep_id,
        seeds=body.seeds,
        settings=settings,
        celery_app=request.app.state.celery,
    )


@router.patch(
    "/{sweep_id}",
    operation_id="update_sweep",
    summary="Rename, tag or annotate a sweep",
    description="Sets the fields given: `name`, `tags` (the whole list: each of its jobs loses the sweep's "
    "old tags and gets the new ones, keeping its own) and `notes`; an absent field stays as it is and null "
    "clears the notes. The specs and results never change.",
    response_model=SweepDetail,
    responses=problem_responses(404),
)
def patch_sweep(sweep_id: SweepId, body: SweepUpdate, owner: OwnerDep, session: SessionDep) -> SweepDetail:
    """Update a sweep's labels."""
    return service.update_sweep(session, owner=owner, sweep_id=sweep_id, changes=body)


@router.delete(
    "/{sweep_id}",
    status_code=204,
    operation_id="delete_sweep",
    summary="Delete a sweep",
    description="Removes the sweep and its jobs with their metrics, checkpoints and files. While any of its "
    "jobs is queued or running the answer is 409: cancel the sweep first and wait for its jobs to end.",
    response_class=Response,
    responses=problem_responses(404, 409),
)
def delete_sweep(
    sweep_id: SweepId, owner: OwnerDep, session: SessionDep, settings: SettingsDep, artifacts: ArtifactsDep
) -> Response:
    """Delete a finished sweep."""
    service.delete_sweep(
        session, owner=owner, sweep_id=sweep_id, artifacts=artifacts, cache_dir=settings.data_dir / "cache"
    )
    return Response(status_code=204)
