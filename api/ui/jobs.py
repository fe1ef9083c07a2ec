"""Dashboard pages of jobs: the table, one job (live), its plots, files, predictions and actions."""

from __future__ import annotations

import asyncio
import re
from typing import Annotated, Any

from fastapi import APIRouter, Path, Query, Request, Response
from fastapi.responses import StreamingResponse
from sqlalchemy.orm import Session

from api.deps import ArtifactsDep, SessionDep, SettingsDep
from api.errors import Conflict, Unprocessable
from api.events.hub import app_hub
from api.jobs import outputs
from api.jobs import service as jobs
from api.jobs.schemas import JobDetail
from api.plots import render as plot_render
from api.plots import service as plots
from api.ui.charts import learning_charts
from api.ui.listing import SORTS, JobFilter, job_table
from api.ui.live import LiveJob, job_stream
from api.ui.pages import FormDep, HtmlRoute, UserDep, as_dict, field, redirect, render, templates
from core.models import JobStatus
from training.spec.dataset import DATASET_INFO, Task

router = APIRouter(prefix="/ui", route_class=HtmlRoute, include_in_schema=False)

Id = Annotated[str, Path(max_length=64, pattern=r"^[A-Za-z0-9_-]+$")]
Text = Annotated[str, Query(max_length=200)]
LIVE = (JobStatus.queued, JobStatus.running)
MAX_TABLE_EPOCHS = 200  # rows shown on the page; the CSV has every epoch
MAX_PREDICT_ROWS = 100
PLOT_WIDTH, PLOT_HEIGHT = 800, 420


def _status(text: str) -> JobStatus | None:
    if not text:
        return None
    try:
        return JobStatus(text)
    except ValueError:
        raise Unprocessable.for_field("status", f"one of {', '.join(JobStatus)}") from None


@router.get("")
def jobs_page(
    request: Request,
    user: UserDep,
    session: SessionDep,
    status: Text = "",
    tag: Text = "",
    name: Text = "",
    sweep: Annotated[str, Query(max_length=64)] = "",
    sort: Annotated[str, Query(max_length=40)] = "created",
    page: Annotated[int, Query(ge=1, le=1_000_000)] = 1,
    deleted: Annotated[str, Query(max_length=64)] = "",
) -> Response:
    """The jobs table; an htmx request gets only the table (filters and the 5 s refresh swap it)."""
    assert user.owner is not None
    wanted = JobFilter(
        status=_status(status),
        tag=tag.strip() or None,
        name=name.strip() or None,
        sweep=sweep.strip() or None,
        sort=sort,
        page=page,
    )
    table = job_table(session, owner=user.owner, wanted=wanted)
    query = {"status": status, "tag": tag, "name": name, "sweep": sweep, "sort": sort}
    context: dict[str, Any] = {"table": table, "wanted": wanted, "query": query, "sorts": SORTS}
    context["statuses"] = list(JobStatus)
    if request.headers.get("HX-Request") and request.headers.get("HX-Target") == "jobs":
        return render(request, "jobs/_table.html", **context)
    return render(request, "jobs/list.html", deleted=deleted, **context)


def epoch_columns(spec: dict[str, Any], records: list[dict[str, Any]]) -> list[str]:
    """The epoch table's columns: accuracy for classification, RMSE for regression."""
    kind = next(
        (
            name
            for record in records
            for name in ("accuracy", "rmse")
            if record.get(f"val_{name}") is not None
        ),
        None,
    )
    if kind is None:  # no epoch yet: what the loss, or the dataset's task, says
        loss = str(spec.get("training", {}).get("loss", "auto"))
        info = DATASET_INFO.get(str(spec.get("dataset", {}).get("name", "")))
        regression = loss not in ("auto", "cross_entropy") or (
            loss == "auto" and info is not None and info.task == Task.regression
        )
        kind = "rmse" if regression else "accuracy"
    return ["epoch", "train_loss", "val_loss", f"train_{kind}", f"val_{kind}", "learning_rate", "seconds"]


def status_context(job: JobDetail) -> dict[str, Any]:
    """What job/_status.html shows."""
    return {
        "status": job.status,
        "epoch": job.progress.epoch,
        "epochs": job.progress.epochs,
        "eta": job.progress.eta_seconds,
    }


def outcome_context(session: Session, *, owner: str, job_id: str) -> dict[str, Any]:
    """The job's result, files, plots and actions (the part that changes when it ends)."""
    job = jobs.get_job(session, owner=owner, job_id=job_id)
    checkpoints = outputs.list_checkpoints(session, owner=owner, job_id=job_id)
    return {"job": job, "checkpoints": checkpoints, "st": status_context(job), "live": job.status in LIVE}


def _job_page(request: Request, session: Session, *, owner: str, job_id: str, **extra: Any) -> Response:
    context = outcome_context(session, owner=owner, job_id=job_id)
    records = [as_dict(record) for record in outputs.job_metrics(session, owner=owner, job_id=job_id).items]
    job: JobDetail = context["job"]
    return render(
        request,
        "job/page.html",
        records=records[-MAX_TABLE_EPOCHS:],
        hidden_epochs=max(len(records) - MAX_TABLE_EPOCHS, 0),
        shown=records[-1]["epoch"] if records else 0,
        columns=epoch_columns(as_dict(job.spec), records),
        charts=learning_charts(records, job.id),
        predict_rows=extra.pop("predict_rows", ""),
        **context,
        **extra,
    )


@router.get("/jobs/{job_id}")
def job_page(job_id: Id, request: Request, user: UserDep, session: SessionDep) -> Response:
    """One job: spec, warnings, epochs, curves, plots, result, files, actions, predictions."""
    assert user.owner is not None
    return _job_page(request, session, owner=user.owner, job_id=job_id)


@router.get("/jobs/{job_id}/events")
async def job_events(
    job_id: Id,
    request: Request,
    user: UserDep,
    session: SessionDep,
    settings: SettingsDep,
    after: Annotated[int, Query(ge=0, le=10_000_000)] = 0,
) -> Response:
    """The job page's live fragments (SSE); resumes after Last-Event-ID when the browser reconnects."""
    owner = user.owner
    assert owner is not None
    job = await asyncio.to_thread(jobs.get_job, session, owner=owner, job_id=job_id)
    resume = request.headers.get("Last-Event-ID", "")
    shown = int(resume) if resume.isdigit() else after
    columns = epoch_columns(as_dict(job.spec), [])
    factory = request.app.state.session_factory

    def fragment(name: str, context: dict[str, Any]) -> str:
        base = {"request": request, "columns": columns, "csrf_token": user.csrf, "csrf_field": "csrf_token"}
        return templates.get_template(name).render({**base, **context})

    def load_outcome() -> dict[str, Any]:
        with factory() as fresh:
            return outcome_context(fresh, owner=owner, job_id=job_id)

    live = LiveJob(status=job.status, epoch=0, epochs=job.progress.epochs)
    stream = job_stream(
        app_hub(request.app),
        job_id=job_id,
        shown=shown,
        live=live,
        render=fragment,
        load_outcome=load_outcome,
        keepalive=settings.events_keepalive,
    )
    headers = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
    return StreamingResponse(stream, media_type="text/event-stream", headers=headers)


@router.post("/jobs/{job_id}/cancel")
def cancel_job(job_id: Id, request: Request, user: UserDep, session: SessionDep, _form: FormDep) -> Response:
    """Cancel, then back to the job."""
    assert user.owner is not None
    jobs.cancel_job(session, owner=user.owner, job_id=job_id)
    return redirect(request, f"/ui/jobs/{job_id}")


@router.post("/jobs/{job_id}/delete")
def delete_job(
    job_id: Id,
    request: Request,
    user: UserDep,
    session: SessionDep,
    settings: SettingsDep,
    artifacts: ArtifactsDep,
    _form: FormDep,
) -> Response:
    """Delete a finished job, then back to the table."""
    assert user.owner is not None
    jobs.delete_job(
        session, owner=user.owner, job_id=job_id, artifacts=artifacts, cache_dir=settings.data_dir / "cache"
    )
    return redirect(request, f"/ui?deleted={job_id}")


def parse_rows(text: str) -> list[list[float]]:
    """Rows of numbers, one per line, separated by commas or spaces; 422 naming the line otherwise."""
    rows = []
    for number, line in enumerate(text.splitlines(), start=1):
        cells = [cell for cell in re.split(r"[,\s;]+", line.strip()) if cell]
        if not cells:
            continue
        try:
            rows.append([float(cell) for cell in cells])
        except ValueError:
            raise Unprocessable.for_field("rows", f"line {number} is not a row of numbers") from None
    if not rows:
        raise Unprocessable.for_field("rows", "give at least one row of numbers")
    if len(rows) > MAX_PREDICT_ROWS:
        raise Unprocessable.for_field("rows", f"at most {MAX_PREDICT_ROWS} rows here; the API takes more")
    return rows


@router.post("/jobs/{job_id}/predict")
def predict(
    job_id: Id,
    request: Request,
    user: UserDep,
    session: SessionDep,
    settings: SettingsDep,
    artifacts: ArtifactsDep,
    form: FormDep,
) -> Response:
    """Predict a few rows; the answer (or why not) shows in the job page's predict section."""
    assert user.owner is not None
    text = field(form, "rows")[:100_000]
    prediction, problem = None, None
    try:
        inputs = parse_rows(text)
        prediction = outputs.predict(
            session,
            owner=user.owner,
            job_id=job_id,
            inputs=inputs,
            artifacts=artifacts,
            cache_dir=settings.data_dir / "cache",
        )
    except (Unprocessable, Conflict) as error:
        problem = error.detail
        inputs = []
    return _job_page(
        request,
        session,
        owner=user.owner,
        job_id=job_id,
        predict_rows=text,
        prediction=prediction,
        prediction_inputs=inputs,
        predict_problem=problem,
    )


@router.get("/jobs/{job_id}/plots/{kind}.png")
def job_plot(job_id: Id, kind: str, user: UserDep, session: SessionDep) -> Response:
    """Gradient norm or saturation by layer (an activation without saturation gets an explaining image)."""
    assert user.owner is not None
    size = {"width": PLOT_WIDTH, "height": PLOT_HEIGHT}
    if kind == "gradients":
        image = plots.gradients_png(session, owner=user.owner, job_id=job_id, **size)
    elif kind == "saturation":
        try:
            image = plots.saturation_png(session, owner=user.owner, job_id=job_id, **size)
        except Conflict as error:
            image = plot_render.message_png("Saturation by layer", error.detail, **size)
    else:
        raise Unprocessable.for_field("kind", "gradients or saturation")
    return Response(image, media_type="image/png", headers={"Cache-Control": "private, no-cache"})


@router.get("/jobs/{job_id}/checkpoints/{name}")
def checkpoint(
    job_id: Id,
    name: Annotated[str, Path(max_length=64, pattern=r"^[A-Za-z0-9_.-]+$")],
    user: UserDep,
    session: SessionDep,
    artifacts: ArtifactsDep,
) -> Response:
    """Download a checkpoint file."""
    assert user.owner is not None
    found = outputs.checkpoint_download(
        session, owner=user.owner, job_id=job_id, name=name, artifacts=artifacts
    )
    return StreamingResponse(
        artifacts.iter_bytes(found.key),
        media_type="application/octet-stream",
        headers={
            "Content-Disposition": f'attachment; filename="{found.filename}"',
            "Content-Length": str(found.size_bytes),
        },
    )


@router.get("/jobs/{job_id}/metrics.csv")
def metrics_csv(job_id: Id, user: UserDep, session: SessionDep) -> Response:
    """Every epoch's record as CSV."""
    assert user.owner is not None
    page = outputs.job_metrics(session, owner=user.owner, job_id=job_id)
    return Response(
        outputs.metrics_csv(page),
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="{job_id}-metrics.csv"'},
    )
