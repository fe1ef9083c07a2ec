"""/v1/jobs: thin routes over api.jobs.service and api.jobs.outputs."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Header, Path, Query, Request, Response
from fastapi.responses import StreamingResponse

from api.deps import ArtifactsDep, OwnerDep, SessionDep, SettingsDep
from api.errors import problem_responses
from api.jobs import listing, outputs, service
from api.jobs.schemas import (
    PRINTABLE,
    CheckpointInfo,
    JobCreate,
    JobDetail,
    JobPage,
    JobUpdate,
    MetricsPage,
    PredictRequest,
    PredictResponse,
)
from api.params import BINARY, CSV_RESPONSE, JobId, OutputFormat
from core.models import JobStatus

router = APIRouter(prefix="/v1/jobs", tags=["jobs"])

CheckpointName = Annotated[
    str,
    Path(
        description="best, last, model (the one result.test measured) or epoch-NNNN.",
        max_length=64,
        pattern=r"^[A-Za-z0-9_.-]+$",
    ),
]


@router.post(
    "",
    status_code=202,
    operation_id="submit_job",
    summary="Submit a training job",
    description="Validates the spec (schema, dataset, service limits), stores a queued job and hands its id "
    "to a worker. Answers 202 with the job and its lint warnings. With an `Idempotency-Key` header a retry "
    "with the same body returns the same job (200); the same key with a different body is a 409.",
    response_model=JobDetail,
    responses=problem_responses(
        409, 429, success={"model": JobDetail, "description": "Replay of an earlier request with this key."}
    ),
)
def post_job(
    body: JobCreate,
    request: Request,
    response: Response,
    owner: OwnerDep,
    session: SessionDep,
    settings: SettingsDep,
    idempotency_key: Annotated[
        str | None,
        Header(
            alias="Idempotency-Key",
            min_length=1,
            max_length=255,
            description="Makes retries safe: one key, one job.",
        ),
    ] = None,
) -> JobDetail:
    """Submit a job."""
    job, created = service.submit_job(
        session,
        owner=owner,
        request=body,
        settings=settings,
        celery_app=request.app.state.celery,
        idempotency_key=idempotency_key,
    )
    if not created:
        response.status_code = 200
    response.headers["Location"] = f"/v1/jobs/{job.id}"
    return job


@router.get(
    "",
    operation_id="list_jobs",
    summary="List jobs",
    description="Your jobs, newest first (or by `sort`), optionally filtered by status, tag, name and "
    "sweep. Pass `next_cursor` back as `cursor` (with the same `sort`) for the next page; pages stay "
    "stable while new jobs arrive. Sorting by a metric puts jobs without it (unfinished) last.",
    response_model=JobPage,
    responses=problem_responses(),
)
def get_jobs(
    owner: OwnerDep,
    session: SessionDep,
    status: Annotated[JobStatus | None, Query(description="Only jobs in this state.")] = None,
    tag: Annotated[
        str | None, Query(max_length=100, pattern=PRINTABLE, description="Only jobs with this tag.")
    ] = None,
    name: Annotated[
        str | None, Query(max_length=200, pattern=PRINTABLE, description="Only jobs with this name.")
    ] = None,
    sweep: Annotated[
        str | None,
        Query(max_length=64, pattern=r"^[A-Za-z0-9_-]+$", description="Only the jobs of this sweep."),
    ] = None,
    sort: Annotated[
        str, Query(max_length=40, description=listing.SORT_HELP, examples=["-test_accuracy"])
    ] = "-created",
    limit: Annotated[int, Query(ge=1, le=service.MAX_PAGE_SIZE, description="Page size.")] = 20,
    cursor: Annotated[str | None, Query(max_length=500, description="From a previous page.")] = None,
) -> JobPage:
    """List jobs."""
    return listing.list_jobs(
        session,
        owner=owner,
        status=status,
        tag=tag,
        name=name,
        sweep_id=sweep,
        sort=sort,
        limit=limit,
        cursor=cursor,
    )


@router.get(
    "/{job_id}",
    operation_id="get_job",
    summary="Get a job",
    description="Status, progress {epoch, epochs, eta_seconds}, spec, warnings, result summary (best, final "
    "and test metrics, stopped_early, best_epoch), error, timestamps, worker and device.",
    response_model=JobDetail,
    responses=problem_responses(404),
)
def get_job(job_id: JobId, owner: OwnerDep, session: SessionDep) -> JobDetail:
    """Read one job."""
    return service.get_job(session, owner=owner, job_id=job_id)


@router.patch(
    "/{job_id}",
    operation_id="update_job",
    summary="Rename, tag or annotate a job",
    description="Sets the fields given: `name`, `tags` (the whole list) and `notes` (free text); an absent "
    "field stays as it is and null clears name or notes. The spec and the results never change.",
    response_model=JobDetail,
    responses=problem_responses(404),
)
def patch_job(job_id: JobId, body: JobUpdate, owner: OwnerDep, session: SessionDep) -> JobDetail:
    """Update a job's labels."""
    return service.update_job(session, owner=owner, job_id=job_id, changes=body)


@router.get(
    "/{job_id}/metrics",
    operation_id="get_job_metrics",
    summary="Per-epoch metrics",
    description="One record per finished epoch (losses, accuracy, learning rate, and `layers`: per-layer "
    "gradient norms, saturation, dead units...). `since_epoch` returns only later epochs (for polling); "
    "`fields` keeps only the named keys (epoch is always kept); `format=csv` flattens layer diagnostics "
    "into `layers.<name>.<field>` columns.",
    response_model=MetricsPage,
    response_model_exclude_unset=True,  # a record holds what the run measured, not a null per metric
    responses=problem_responses(404, success=CSV_RESPONSE),
)
def get_metrics(
    job_id: JobId,
    owner: OwnerDep,
    session: SessionDep,
    since_epoch: Annotated[
        int | None, Query(ge=0, le=10_000_000, description="Only epochs after this one.")
    ] = None,
    fields: Annotated[
        str | None, Query(max_length=1000, description="Comma-separated keys to keep, e.g. val_loss,layers.")
    ] = None,
    format: Annotated[OutputFormat, Query(description="json (default) or csv.")] = OutputFormat.json,
) -> MetricsPage | Response:
    """Read metrics."""
    wanted = [field.strip() for field in fields.split(",") if field.strip()] if fields else None
    page = outputs.job_metrics(session, owner=owner, job_id=job_id, since_epoch=since_epoch, fields=wanted)
    if format == "csv":
        return Response(
            outputs.metrics_csv(page),
            media_type="text/csv; charset=utf-8",
            headers={"Content-Disposition": f'attachment; filename="{job_id}-metrics.csv"'},
        )
    return page


@router.get(
    "/{job_id}/checkpoints",
    operation_id="list_checkpoints",
    summary="List checkpoints",
    description="The job's checkpoint files (`last`, `best`, and any periodic ones), with download URLs.",
    response_model=list[CheckpointInfo],
    responses=problem_responses(404),
)
def get_checkpoints(job_id: JobId, owner: OwnerDep, session: SessionDep) -> list[CheckpointInfo]:
    """List checkpoints."""
    return outputs.list_checkpoints(session, owner=owner, job_id=job_id)


@router.get(
    "/{job_id}/checkpoints/{name}",
    operation_id="download_checkpoint",
    summary="Download a checkpoint",
    description="Streams the safetensors file (weights, optimizer state, and JSON metadata with the spec). "
    "Load it with `training.load_model(path)`. The name `model` gives the checkpoint whose weights "
    "`result.test` measured (`result.model_checkpoint`).",
    response_class=StreamingResponse,
    responses=problem_responses(
        404, success={"content": {"application/octet-stream": {"schema": BINARY}}, "description": "The file."}
    ),
)
def download_checkpoint(
    job_id: JobId, name: CheckpointName, owner: OwnerDep, session: SessionDep, artifacts: ArtifactsDep
) -> StreamingResponse:
    """Stream a checkpoint file."""
    found = outputs.checkpoint_download(session, owner=owner, job_id=job_id, name=name, artifacts=artifacts)
    return StreamingResponse(
        artifacts.iter_bytes(found.key),
        media_type="application/octet-stream",
        headers={
            "Content-Disposition": f'attachment; filename="{found.filename}"',
            "Content-Length": str(found.size_bytes),
        },
    )


@router.post(
    "/{job_id}/predict",
    operation_id="predict",
    summary="Predict with a trained job",
    description="Runs the job's model on raw feature rows (scaling is applied as in training): by default "
    "the checkpoint whose weights `result.test` measured (`result.model_checkpoint`; while the job runs, the "
    "one it will end with), or `checkpoint`: best or last. Classification answers classes and "
    "probabilities; regression answers values in the target's units. 409 while that checkpoint does not "
    "exist yet.",
    response_model=PredictResponse,
    responses=problem_responses(404, 409),
)
def post_predict(
    job_id: JobId,
    body: PredictRequest,
    owner: OwnerDep,
    session: SessionDep,
    settings: SettingsDep,
    artifacts: ArtifactsDep,
) -> PredictResponse:
    """Predict."""
    return outputs.predict(
        session,
        owner=owner,
        job_id=job_id,
        inputs=body.inputs,
        checkpoint=body.checkpoint,
        artifacts=artifacts,
        cache_dir=settings.data_dir / "cache",
    )


@router.post(
    "/{job_id}/cancel",
    operation_id="cancel_job",
    summary="Cancel a job",
    description="A queued job is cancelled at once; a running job is asked to stop and ends `cancelled` "
    "within a step or two (watch its status). Cancelling a cancelled job is harmless; a job that has "
    "succeeded or failed answers 409.",
    response_model=JobDetail,
    responses=problem_responses(404, 409),
)
def post_cancel(job_id: JobId, owner: OwnerDep, session: SessionDep) -> JobDetail:
    """Cancel a job."""
    return service.cancel_job(session, owner=owner, job_id=job_id)


@router.delete(
    "/{job_id}",
    status_code=204,
    operation_id="delete_job",
    summary="Delete a job",
    description="Removes a finished job's metrics, checkpoints and files. A queued or running job answers "
    "409: cancel it first.",
    response_class=Response,
    responses=problem_responses(404, 409),
)
def delete_job(
    job_id: JobId, owner: OwnerDep, session: SessionDep, settings: SettingsDep, artifacts: ArtifactsDep
) -> Response:
    """Delete a finished job."""
    service.delete_job(
        session, owner=owner, job_id=job_id, artifacts=artifacts, cache_dir=settings.data_dir / "cache"
    )
    return Response(status_code=204)
