"""A job's per-layer diagnostics as series, and the pictures drawn from them (no FastAPI here)."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from api.compare.service import compare_jobs
from api.errors import Conflict
from api.jobs.service import owned_job
from api.plots import render
from core.models import EpochMetric


def layer_series(
    session: Session, *, owner: str, job_id: str, field: str
) -> tuple[list[int], dict[str, list[float | None]]]:
    """(epochs, {layer name: value of `field` per epoch}) from the job's records, in layer order."""
    owned_job(session, owner=owner, job_id=job_id)
    rows = session.execute(
        select(EpochMetric.epoch, EpochMetric.record["layers"])
        .where(EpochMetric.job_id == job_id)
        .order_by(EpochMetric.epoch)
    ).all()
    epochs = [int(epoch) for epoch, _layers in rows]
    series: dict[str, list[float | None]] = {}
    for position, (_epoch, layers) in enumerate(rows):
        for layer in layers if isinstance(layers, list) else []:
            if not isinstance(layer, dict):
                continue
            values = series.setdefault(str(layer.get("name")), [None] * len(rows))
            value = layer.get(field)
            values[position] = float(value) if isinstance(value, int | float) else None
    return epochs, series


def _job_label(job_id: str, name: str | None) -> str:
    return f"job {job_id} ({name})" if name else f"job {job_id}"


def _first_to_last_ratio(series: dict[str, list[float | None]]) -> float | None:
    """The first layer's gradient norm over the last layer's, at the last epoch both have one."""
    if len(series) < 2:
        return None
    columns = list(series.values())
    first, last = columns[0], columns[-1]
    pairs = [(a, b) for a, b in zip(first, last, strict=True) if a is not None and b]
    return pairs[-1][0] / pairs[-1][1] if pairs else None


def gradients_png(session: Session, *, owner: str, job_id: str, width: int, height: int) -> bytes:
    """Gradient norm by layer over epochs on a log axis: a vanishing gradient shows as a fan of lines."""
    job = owned_job(session, owner=owner, job_id=job_id)
    epochs, series = layer_series(session, owner=owner, job_id=job_id, field="grad_norm")
    activation = job.spec.get("activation", "?")
    if not epochs:
        return render.message_png(
            f"Gradient norm by layer: job {job_id}",
            f"no epochs recorded yet ({job.status}); try again once an epoch has finished",
            width=width,
            height=height,
        )
    title = f"Gradient norm by layer, {activation}: {_job_label(job_id, job.name)}"
    ratio = _first_to_last_ratio(series)
    if ratio is not None:
        title += f"\nat the last epoch the first layer gets {ratio:.2g}× the output layer's gradient"
    return render.layer_png(
        epochs,
        series,
        title=title,
        ylabel="‖∂loss/∂W‖ (log scale)",
        log=True,
        width=width,
        height=height,
    )


def saturation_png(session: Session, *, owner: str, job_id: str, width: int, height: int) -> bytes:
    """Saturated (sigmoid, tanh) or dead (relu types) fraction per layer over epochs; 409 for neither."""
    job = owned_job(session, owner=owner, job_id=job_id)
    activation = job.spec.get("activation", "?")
    saturated = layer_series(session, owner=owner, job_id=job_id, field="saturated_fraction")
    dead = layer_series(session, owner=owner, job_id=job_id, field="dead_fraction")
    choice: tuple[str, str, tuple[list[int], dict[str, list[float | None]]]] | None = None
    for title, label, (epochs, series) in (
        ("Saturated units by layer (|net input| > 3)", "fraction of units saturated", saturated),
        ("Dead units by layer (net input ≤ 0 for a whole batch)", "fraction of units dead", dead),
    ):
        measured = {name: values for name, values in series.items() if any(v is not None for v in values)}
        if measured:
            choice = (title, label, (epochs, measured))
            break
    if choice is None:
        if not saturated[0]:
            return render.message_png(
                f"Saturation by layer: job {job_id}",
                f"no epochs recorded yet ({job.status}); try again once an epoch has finished",
                width=width,
                height=height,
            )
        raise Conflict(
            f"job {job_id} uses activation {activation!r}, which has neither saturation (sigmoid, tanh) nor "
            "dead units (relu, leaky_relu) to measure"
        )
    title, label, (epochs, series) = choice
    return render.layer_png(
        epochs,
        series,
        title=f"{title}\n{activation}: {_job_label(job_id, job.name)}",
        ylabel=label,
        log=False,
        fraction=True,
        width=width,
        height=height,
    )


def comparison_png(
    session: Session,
    *,
    owner: str,
    job_ids: list[str] | None,
    sweep_id: str | None,
    metric: str,
    target: str | None,
    width: int,
    height: int,
) -> bytes:
    """The compared jobs' curves of `metric` (full resolution, so seed groups align by epoch)."""
    comparison = compare_jobs(
        session,
        owner=owner,
        job_ids=job_ids,
        sweep_id=sweep_id,
        metric=metric,
        target=target,
        fields=[metric],
        points=None,
        job_curves=True,
    )
    return render.comparison_png(comparison, metric=metric, width=width, height=height)
