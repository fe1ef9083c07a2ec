"""Dashboard pages of sweeps: the list, and one sweep's progress, comparison, plot, CSV and cancel."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query, Request, Response

from api.compare import service as compare
from api.compare.export import comparison_csv
from api.deps import SessionDep
from api.plots import service as plots
from api.sweeps import service as sweeps
from api.ui.pages import FormDep, HtmlRoute, UserDep, redirect, render
from core.models import JobStatus

router = APIRouter(prefix="/ui", route_class=HtmlRoute, include_in_schema=False)

Id = Annotated[str, Path(max_length=64, pattern=r"^[A-Za-z0-9_-]+$")]
Metric = Annotated[str, Query(max_length=100, pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")]
METRICS = ("val_loss", "val_accuracy", "val_rmse", "train_loss")
PLOT_WIDTH, PLOT_HEIGHT = 900, 480


@router.get("/sweeps")
def sweeps_page(
    request: Request,
    user: UserDep,
    session: SessionDep,
    cursor: Annotated[str | None, Query(max_length=500)] = None,
) -> Response:
    """Your sweeps, newest first, with job counts by status."""
    assert user.owner is not None
    page = sweeps.list_sweeps(session, owner=user.owner, limit=50, cursor=cursor)
    return render(request, "sweeps/list.html", page=page, statuses=list(JobStatus))


@router.get("/sweeps/{sweep_id}")
def sweep_page(
    sweep_id: Id, request: Request, user: UserDep, session: SessionDep, metric: Metric = "val_loss"
) -> Response:
    """Progress by status, the groups with their statistics, the spec diff, the curve plot."""
    assert user.owner is not None
    sweep = sweeps.get_sweep(session, owner=user.owner, sweep_id=sweep_id)
    comparison = compare.compare_jobs(
        session, owner=user.owner, sweep_id=sweep_id, metric=metric, fields=[], points=2
    )
    finished = sum(count for status, count in sweep.counts.items() if status not in ("queued", "running"))
    return render(
        request,
        "sweeps/page.html",
        sweep=sweep,
        comparison=comparison,
        metric=metric,
        metrics=METRICS if metric in METRICS else (metric, *METRICS),
        finished=finished,
        live=finished < len(sweep.jobs),
        statuses=list(JobStatus),
    )


@router.get("/sweeps/{sweep_id}/plot.png")
def sweep_plot(sweep_id: Id, user: UserDep, session: SessionDep, metric: Metric = "val_loss") -> Response:
    """The groups' curves of `metric`: mean line and ± 1 std band per group."""
    assert user.owner is not None
    image = plots.comparison_png(
        session,
        owner=user.owner,
        job_ids=None,
        sweep_id=sweep_id,
        metric=metric,
        target=None,
        width=PLOT_WIDTH,
        height=PLOT_HEIGHT,
    )
    return Response(image, media_type="image/png", headers={"Cache-Control": "private, no-cache"})


@router.get("/sweeps/{sweep_id}/compare.csv")
def sweep_csv(sweep_id: Id, user: UserDep, session: SessionDep, metric: Metric = "val_loss") -> Response:
    """One row per job: differing fields and metrics."""
    assert user.owner is not None
    comparison = compare.compare_jobs(session, owner=user.owner, sweep_id=sweep_id, metric=metric, fields=[])
    return Response(
        comparison_csv(comparison),
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="{sweep_id}-compare.csv"'},
    )


@router.post("/sweeps/{sweep_id}/cancel")
def cancel_sweep(
    sweep_id: Id, request: Request, user: UserDep, session: SessionDep, _form: FormDep
) -> Response:
    """Cancel the sweep's unfinished jobs, then back to it."""
    assert user.owner is not None
    sweeps.cancel_sweep(session, owner=user.owner, sweep_id=sweep_id)
    return redirect(request, f"/ui/sweeps/{sweep_id}")
