"""/v1/compare: thin routes over api.compare.service (the compared curves as PNG live in api.plots)."""

from __future__ import annotations

from typing import Annotated, cast

from fastapi import APIRouter, Query, Response

from api.compare import export, query, service
from api.compare.query import Mode
from api.compare.schemas import Comparison
from api.deps import OwnerDep, SessionDep
from api.errors import problem_responses
from api.params import (
    CSV_RESPONSE,
    CompareMode,
    JobsQuery,
    MetricQuery,
    OutputFormat,
    SweepQuery,
    TargetQuery,
    job_ids,
)

router = APIRouter(prefix="/v1/compare", tags=["compare"])


@router.get(
    "",
    operation_id="compare_jobs",
    summary="Compare jobs",
    description="Jobs side by side, named by `jobs=ID,ID,...` or `sweep=ID`:\n\n"
    "- `common`: spec fields (dotted paths) equal in all jobs, once; per job `differs`: only its other "
    "fields;\n"
    "- per job: status, best/final/test metrics, best_epoch, stopped_early, seconds, and "
    "`epochs_to_target` for `target` (e.g. `val_loss<0.3`, `val_accuracy>=0.9`);\n"
    "- `groups`: jobs whose specs differ only in `training.seed`, with mean, sample std (n - 1; 0 when "
    "n = 1) and n of the `metric` at the best epoch, of each test metric and of seconds; `best_group` "
    "by `metric` and `mode` (default: max for *accuracy, else min), and `best_within_noise` when the best "
    "group's mean ± std overlaps the runner-up's;\n"
    "- `curves`: the `fields` per epoch, at most `points` per curve (each bucket keeps its min and max, "
    "so spikes survive).\n\n"
    "`format=csv` answers one flat row per job. Another owner's job or sweep is a 404.",
    response_model=Comparison,
    responses=problem_responses(404, success=CSV_RESPONSE),
)
def get_compare(
    owner: OwnerDep,
    session: SessionDep,
    jobs: JobsQuery = None,
    sweep: SweepQuery = None,
    metric: MetricQuery = "val_loss",
    mode: Annotated[
        CompareMode | None,
        Query(description="min or max is better; default max for *accuracy, min otherwise."),
    ] = None,
    target: TargetQuery = None,
    fields: Annotated[
        str | None,
        Query(
            max_length=1000,
            description="Comma-separated per-epoch fields for `curves` (default train_loss,val_loss).",
            examples=["train_loss,val_loss,val_accuracy"],
        ),
    ] = None,
    points: Annotated[int, Query(ge=2, le=10_000, description="Most points per curve.")] = 200,
    format: Annotated[OutputFormat, Query(description="json (default) or csv.")] = OutputFormat.json,
) -> Response:
    """Compare jobs."""
    comparison = service.compare_jobs(
        session,
        owner=owner,
        job_ids=job_ids(jobs),
        sweep_id=sweep,
        metric=metric,
        mode=None if mode is None else cast(Mode, mode.value),
        target=target,
        fields=query.parse_fields(fields) if format == "json" else [],
        points=points,
    )
    if format == "csv":
        return Response(
            export.comparison_csv(comparison),
            media_type="text/csv; charset=utf-8",
            headers={"Content-Disposition": 'attachment; filename="compare.csv"'},
        )
    # Already validated: serialize once (FastAPI would validate the 100,000-point model again).
    return Response(comparison.model_dump_json(), media_type="application/json")
