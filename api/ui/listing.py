"""The dashboard's jobs table: filtered, sorted and paged in SQL, one page of rows at a time (no FastAPI).

Cost per page, whatever the number of jobs: one COUNT, one page query (the owner's created_at index for
the default sort), one tags query (selectin) and, for running jobs, one query for their latest records.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, and_, case, func, select, tuple_
from sqlalchemy.orm import Session

from api.errors import Unprocessable
from api.jobs.schemas import JobSummary
from api.jobs.service import to_summary
from api.ui.pages import as_dict
from core.db import utcnow
from core.models import EpochMetric, Job, JobStatus, JobTag
from training.records import is_maximized

PER_PAGE = 50
# Sorts by a result metric: "best" is the best epoch's record, "test" the held-out split.
METRIC_SORTS = {
    "val_loss": ("best", "val_loss"),
    "val_accuracy": ("best", "val_accuracy"),
    "val_rmse": ("best", "val_rmse"),
    "test_loss": ("test", "test_loss"),
    "test_accuracy": ("test", "test_accuracy"),
    "test_rmse": ("test", "test_rmse"),
}
SORTS = ("created", *METRIC_SORTS)
LIVE_FIELDS = ("val_loss", "val_accuracy", "val_rmse")


@dataclass(frozen=True)
class JobFilter:
    """What the table shows: filters, sort and page."""

    status: JobStatus | None = None
    tag: str | None = None
    name: str | None = None
    sweep: str | None = None
    sort: str = "created"
    page: int = 1


@dataclass
class JobRow:
    """One row: the job as the API lists it, its key metrics and its running time."""

    job: JobSummary
    metrics: dict[str, Any] = field(default_factory=dict)
    metrics_from: str = "best"  # best (finished), or the latest epoch (running)
    duration: float | None = None


@dataclass
class JobTable:
    """One page of the table and where it sits among the others."""

    rows: list[JobRow]
    total: int
    page: int
    pages: int

    @property
    def live(self) -> bool:
        """Whether a row may still change (the page then refreshes itself)."""
        return any(row.job.status in (JobStatus.queued, JobStatus.running) for row in self.rows)


def _result_number(dialect: str, part: str, name: str) -> ColumnElement[Any]:
    """SQL for result[part][name] as a number (NULL when absent or not a number)."""
    if dialect == "sqlite":
        return func.json_extract(Job.result, f'$."{part}"."{name}"')
    value = Job.result[part][name]
    return case((func.json_typeof(value) == "number", value.as_float()))


def _escape_like(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def _where(owner: str, wanted: JobFilter) -> list[ColumnElement[bool]]:
    conditions: list[ColumnElement[bool]] = [Job.owner == owner]
    if wanted.status is not None:
        conditions.append(Job.status == wanted.status)
    if wanted.name:
        conditions.append(Job.name.ilike(f"%{_escape_like(wanted.name)}%", escape="\\"))
    if wanted.sweep:
        conditions.append(Job.sweep_id == wanted.sweep)
    if wanted.tag:
        conditions.append(Job.id.in_(select(JobTag.job_id).where(JobTag.tag == wanted.tag)))
    return conditions


def _duration(job: JobSummary, now: datetime) -> float | None:
    """Seconds from start to finish, or to now while running (the summary's times are all UTC-aware)."""
    if job.started_at is None:
        return None
    end = job.finished_at or (now if job.status == JobStatus.running else None)
    return (end - job.started_at).total_seconds() if end else None


def _latest_records(session: Session, jobs: list[Job]) -> dict[str, dict[str, Any]]:
    """The last recorded epoch's key metrics of each running job, in one query."""
    running = [(job.id, job.epoch) for job in jobs if job.status == JobStatus.running and job.epoch > 0]
    if not running:
        return {}
    rows = session.execute(
        select(EpochMetric.job_id, EpochMetric.record).where(
            tuple_(EpochMetric.job_id, EpochMetric.epoch).in_(running)
        )
    )
    return {job_id: {name: record.get(name) for name in LIVE_FIELDS} for job_id, record in rows}


def job_table(session: Session, *, owner: str, wanted: JobFilter, per_page: int = PER_PAGE) -> JobTable:
    """One page of the owner's jobs, filtered and sorted; 422 naming `sort` or `page` when out of range."""
    if wanted.sort not in SORTS:
        raise Unprocessable.for_field("sort", f"sort by one of {', '.join(SORTS)}")
    if wanted.page < 1:
        raise Unprocessable.for_field("page", "pages start at 1")
    conditions = _where(owner, wanted)
    total = session.scalar(select(func.count()).select_from(Job).where(*conditions)) or 0
    pages = max(math.ceil(total / per_page), 1)
    newest: tuple[Any, ...] = (Job.created_at.desc(), Job.id.desc())
    if wanted.sort == "created":
        order = newest
    else:
        part, name = METRIC_SORTS[wanted.sort]
        value = _result_number(session.get_bind().dialect.name, part, name)
        direction = value.desc() if is_maximized(name) else value.asc()
        order = (direction.nulls_last(), *newest)
    query = (
        select(Job)
        .where(and_(*conditions))
        .order_by(*order)
        .offset((wanted.page - 1) * per_page)
        .limit(per_page)
    )
    jobs = list(session.scalars(query))
    latest = _latest_records(session, jobs)
    now = utcnow()
    rows = []
    for job in jobs:
        summary = to_summary(job)  # tags: one selectin query for the whole page
        result = summary.result
        if job.id in latest:
            metrics, source = latest[job.id], f"epoch {job.epoch}"
        else:
            metrics, source = {**as_dict(result and result.best), **as_dict(result and result.test)}, "best"
        rows.append(
            JobRow(job=summary, metrics=metrics, metrics_from=source, duration=_duration(summary, now))
        )
    return JobTable(rows=rows, total=total, page=wanted.page, pages=pages)
