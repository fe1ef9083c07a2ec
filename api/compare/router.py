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
    "- `groups`: jobs whose specs differ only in `training.seed`; over their succeeded jobs (the others "
    "are counted in `excluded` and `warnings`), per metric: n, mean, sample std, the 95% Student-t CI of "
    "the mean, median, min, max; `best_group` by `metric` and `mode` (default: max for *accuracy, else "
    "min);\n"
    "- `tests`: the best group against each other group: paired t-test when both ran the same seeds on "
    "the same dataset and split settings, else Welch's; difference of means with its 95% CI, p, Holm's "
    "p over the list, Hedges' g with its CI, a verdict at `alpha`, and for undecided pairs an estimate of "
    "the seeds per group for 80% power;\n"
    "- `effects`: main effects and two-way interactions of the swept fields over a full grid, as "
    "differences of means with 95% CIs;\n"
    "- `warnings`: groups with fewer than 3 seeds, fields that differ but were not swept, excluded jobs;\n"
    "- `bands`: per field and group, mean, 95% CI and n at each exact epoch (at most `points` epochs, "
    "the same for every group); per-job `curves` with `job_curves=true`.\n\n"
    "`format=csv` answers one flat table: `table=jobs` (default, one row per job), `groups` (every "
    "statistic of every group and its test against the best), `effects`, or `bands` (one row per group, "
    "field and epoch). Another owner's job or sweep is a 404.",
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
    points: Annotated[int, Query(ge=2, le=10_000, description="Most epochs per band and curve.")] = 200,
    alpha: Annotated[
        float, Query(gt=0, lt=1, description="Significance level of the verdicts (Holm-adjusted p < alpha).")
    ] = service.DEFAULT_ALPHA,
    job_curves: Annotated[bool, Query(description="Also every job's curves (`curves`).")] = False,
    format: Annotated[OutputFormat, Query(description="json (default) or csv.")] = OutputFormat.json,
    table: Annotated[
        export.Table, Query(description="With format=csv: jobs (default), groups, effects or bands.")
    ] = "jobs",
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
        fields=query.parse_fields(fields) if format == "json" or table == "bands" else [],
        points=points,
        alpha=alpha,
        job_curves=job_curves and format == "json",
    )
    if format == "csv":
        return Response(
            export.comparison_csv(comparison, table),
            media_type="text/csv; charset=utf-8",
            headers={"Content-Disposition": f'attachment; filename="{export.filename(table)}"'},
        )
    # Already validated: serialize once (FastAPI would validate the 100,000-point model again).
    return Response(comparison.model_dump_json(), media_type="application/json")
