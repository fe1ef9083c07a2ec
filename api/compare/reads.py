"""The compare queries: the selected jobs, and their curves (from the curve store for finished jobs,
else from their epoch rows in one backend-specific query)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import ColumnElement, String, any_, case, func, literal, select
from sqlalchemy.dialects.postgresql import ARRAY, aggregate_order_by, array_agg
from sqlalchemy.orm import Session, defer, lazyload

from api.compare.bands import Run
from api.errors import NotFound, Unprocessable
from api.sweeps.service import grid_order
from core.curves import finite_number, unpack_epochs, unpack_values
from core.models import EpochMetric, Job, JobCurve, JobCurveField, Sweep

MAX_COMPARE_JOBS = 1000


def among(session: Session, column: Any, values: list[str]) -> ColumnElement[bool]:
    """`column IN values`; on PostgreSQL as one array parameter (= ANY), because psycopg parses a query
    text of a thousand placeholders anew on every call, which costs more than running it."""
    if session.get_bind().dialect.name == "postgresql":
        return column == any_(literal(values, ARRAY(String)))
    return column.in_(values)


def selected_jobs(
    session: Session, *, owner: str, job_ids: list[str] | None, sweep_id: str | None
) -> list[Job]:
    """The owner's jobs named by id (in that order) or made by the sweep (in grid order); 404 otherwise."""
    if (job_ids is None) == (sweep_id is None):
        raise Unprocessable.for_field("jobs", "give either jobs=ID,ID,... or sweep=ID")
    # Compare never shows tags or lint warnings: skip loading (and JSON-decoding) them for a thousand jobs.
    columns = select(Job).options(lazyload(Job.tags), defer(Job.warnings)).where(Job.owner == owner)
    if sweep_id is not None:
        sweep = session.scalar(select(Sweep).where(Sweep.id == sweep_id, Sweep.owner == owner))
        if sweep is None:
            raise NotFound(f"no sweep with id {sweep_id!r}")
        jobs = list(session.scalars(columns.where(Job.sweep_id == sweep_id)))
        if not jobs:
            raise NotFound(f"sweep {sweep_id} has no jobs left to compare")
        return sorted(jobs, key=lambda job: grid_order(sweep, job.sweep_params or {}))
    assert job_ids is not None
    wanted = list(dict.fromkeys(job_ids))
    if not wanted:
        raise Unprocessable.for_field("jobs", "name at least one job id")
    if len(wanted) > MAX_COMPARE_JOBS:
        raise Unprocessable.for_field("jobs", f"compare at most {MAX_COMPARE_JOBS} jobs at once")
    found = {job.id: job for job in session.scalars(columns.where(among(session, Job.id, wanted)))}
    missing = [job_id for job_id in wanted if job_id not in found]
    if missing:
        raise NotFound(f"no job with id {', '.join(repr(job_id) for job_id in missing[:5])}")
    return [found[job_id] for job_id in wanted]


def numeric_field(dialect: str, field: str) -> ColumnElement[Any]:
    """SQL for one top-level number of a record (NULL when absent or not a number), per backend."""
    if dialect == "postgresql":
        # JSONB: no text to re-parse per row, and ->> cast to float skips JSON decoding in Python.
        value = EpochMetric.record[field]
        return case((func.jsonb_typeof(value) == "number", value.as_float()))
    if dialect == "sqlite":
        # json_extract gives true as 1: keep numbers only, as on PostgreSQL.
        path = f'$."{field}"'
        kind = func.json_type(EpochMetric.record, path)
        return case((kind.in_(["integer", "real"]), func.json_extract(EpochMetric.record, path)))
    return EpochMetric.record[field]


def read_curves(session: Session, *, job_ids: list[str], fields: list[str]) -> dict[str, dict[str, Run]]:
    """{job: {field: (epochs, values)}}: finished jobs' from the curve store (a row per job and field),
    the others' (running, or ended outside core.lifecycle) from their epoch rows.

    A value is None where the record has no finite number for the field.
    """
    curves: dict[str, dict[str, Run]] = {job_id: {field: ([], []) for field in fields} for job_id in job_ids}
    if not job_ids or not fields:
        return curves
    stored = session.execute(
        select(JobCurve.job_id, JobCurve.epochs).where(among(session, JobCurve.job_id, job_ids))
    )
    epochs_of = {job_id: unpack_epochs(epochs) for job_id, epochs in stored}
    for job_id, epochs in epochs_of.items():
        curves[job_id] = {field: (epochs, [None] * len(epochs)) for field in fields}
    series = select(JobCurveField.job_id, JobCurveField.field, JobCurveField.series).where(
        among(session, JobCurveField.job_id, job_ids), JobCurveField.field.in_(fields)
    )
    for job_id, field, values in session.execute(series):
        curves[job_id][field] = (epochs_of[job_id], unpack_values(values))
    rest = [job_id for job_id in job_ids if job_id not in epochs_of]
    if rest:
        curves.update(read_epoch_curves(session, job_ids=rest, fields=fields))
    return curves


def read_epoch_curves(
    session: Session, *, job_ids: list[str], fields: list[str]
) -> dict[str, dict[str, Run]]:
    """read_curves from the epoch rows, in ONE query that extracts only these fields."""
    curves: dict[str, dict[str, Run]] = {job_id: {field: ([], []) for field in fields} for job_id in job_ids}
    dialect = session.get_bind().dialect.name
    values = [numeric_field(dialect, field) for field in fields]
    selected = among(session, EpochMetric.job_id, job_ids)
    if dialect == "postgresql":
        # One row per job with arrays: a hundred times fewer rows to send and to turn into Python objects.
        # The SQL already kept numbers only (a JSONB number is finite); the rest are NULL, i.e. None.
        by_epoch = [array_agg(aggregate_order_by(value, EpochMetric.epoch)) for value in values]
        epochs = array_agg(aggregate_order_by(EpochMetric.epoch, EpochMetric.epoch))
        query = select(EpochMetric.job_id, epochs, *by_epoch).where(selected).group_by(EpochMetric.job_id)
        for job_id, job_epochs, *columns in session.execute(query):
            curves[job_id] = {
                field: (job_epochs, column) for field, column in zip(fields, columns, strict=True)
            }
        return curves
    query = (
        select(EpochMetric.job_id, EpochMetric.epoch, *values)
        .where(selected)
        .order_by(EpochMetric.job_id, EpochMetric.epoch)
    )
    gathered: dict[tuple[str, str], tuple[list[int], list[float | None]]] = {}
    for job_id, epoch, *row in session.execute(query):
        for field, value in zip(fields, row, strict=True):
            epochs_of, values_of = gathered.setdefault((job_id, field), ([], []))
            epochs_of.append(epoch)
            values_of.append(finite_number(value))
    for (job_id, field), run in gathered.items():
        curves[job_id][field] = run
    return curves
