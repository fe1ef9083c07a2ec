"""Listing jobs: filters, sorting by creation or by a result metric, keyset (cursor) pagination."""

from __future__ import annotations

import base64
import binascii
import json
import re
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, Select, and_, or_, select
from sqlalchemy.orm import Session

from api.errors import Unprocessable
from api.jobs.schemas import JobPage
from api.jobs.service import MAX_PAGE_SIZE, to_summary
from core.models import Job, JobStatus, JobTag

# Metrics a list can be sorted by: test_* from the test split, train_*/val_* at the best epoch.
SORT_METRIC = re.compile(r"^(test|train|val)_(loss|accuracy|rmse)$")
SORT_HELP = (
    "created (newest first, the default) or a result metric: test_loss, test_accuracy, test_rmse (the test "
    "split), train_*/val_* (the best epoch). Prefix '-' for descending: -created, -test_accuracy, val_loss."
)


def _metric(name: str) -> ColumnElement[Any]:
    path = ("test", name) if name.startswith("test_") else ("best", name)
    return Job.result[path].as_float()


def _cursor(values: list[Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(values).encode()).decode().rstrip("=")


def _read_cursor(cursor: str, *, sort: str) -> tuple[float | None, datetime, str]:
    """(metric value, created_at, id) of the last row of the previous page, sorted the same way."""
    try:
        raw = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
        if isinstance(raw, list) and len(raw) == 2:  # a cursor of the default order: [created, id]
            raw = [sort, None, *raw]
        cursor_sort, value, created, job_id = raw
        if cursor_sort != sort or not (value is None or isinstance(value, int | float)):
            raise ValueError
        return value, datetime.fromisoformat(created), str(job_id)
    except (ValueError, TypeError, binascii.Error, UnicodeDecodeError):
        raise Unprocessable.for_field(
            "cursor", "not a cursor this service returned for this sort; start without one"
        ) from None


def parse_sort(sort: str) -> tuple[str, bool]:
    """(field, descending) of a sort parameter; 422 naming `sort` for anything else."""
    descending = sort.startswith("-")
    field = sort.removeprefix("-")
    if field != "created" and not SORT_METRIC.match(field):
        raise Unprocessable.for_field("sort", f"cannot sort by {field!r}: use {SORT_HELP}")
    return field, descending


def _after(query: Select[Any], value: ColumnElement[Any] | None, last: Any, descending: bool) -> Any:
    """Rows after the cursor: by value (nulls last), then newest first, then id (a total order)."""
    value_at, created, job_id = last
    tie = or_(Job.created_at < created, and_(Job.created_at == created, Job.id < job_id))
    if value is None:
        return query.where(tie)
    if value_at is None:
        return query.where(value.is_(None), tie)
    beyond = value < value_at if descending else value > value_at
    return query.where(or_(value.is_(None), beyond, and_(value == value_at, tie)))


def list_jobs(
    session: Session,
    *,
    owner: str,
    status: JobStatus | None = None,
    tag: str | None = None,
    name: str | None = None,
    sweep_id: str | None = None,
    sort: str = "-created",
    limit: int = 20,
    cursor: str | None = None,
) -> JobPage:
    """The owner's jobs, filtered and sorted, one page at a time (keyset pagination: stable under inserts)."""
    if not 1 <= limit <= MAX_PAGE_SIZE:
        raise Unprocessable.for_field("limit", f"must be between 1 and {MAX_PAGE_SIZE}")
    field, descending = parse_sort(sort)
    query = select(Job).where(Job.owner == owner)
    if status is not None:
        query = query.where(Job.status == status)
    if name is not None:
        query = query.where(Job.name == name)
    if sweep_id is not None:
        query = query.where(Job.sweep_id == sweep_id)
    if tag is not None:
        query = query.where(Job.id.in_(select(JobTag.job_id).where(JobTag.tag == tag)))
    value = None if field == "created" else _metric(field)
    order: list[Any]
    if field == "created" and not descending:  # oldest first: the same keyset, mirrored
        order = [Job.created_at.asc(), Job.id.asc()]
    else:
        order = [Job.created_at.desc(), Job.id.desc()]
    if value is not None:
        order = [(value.is_(None)).asc(), value.desc() if descending else value.asc(), *order]
    if cursor is not None:
        last = _read_cursor(cursor, sort=sort)
        if field == "created" and not descending:
            _, created, job_id = last
            query = query.where(
                or_(Job.created_at > created, and_(Job.created_at == created, Job.id > job_id))
            )
        else:
            query = _after(query, value, last, descending)
    rows = list(session.scalars(query.order_by(*order).limit(limit + 1)))
    next_cursor = None
    if len(rows) > limit:
        last_row = rows[limit - 1]
        value_at = _row_value(last_row, field) if value is not None else None
        next_cursor = _cursor([sort, value_at, last_row.created_at.isoformat(), last_row.id])
    return JobPage(items=[to_summary(job) for job in rows[:limit]], next_cursor=next_cursor)


def _row_value(job: Job, field: str) -> float | None:
    """The sort metric of a row, as the database reads it."""
    part = (job.result or {}).get("test" if field.startswith("test_") else "best") or {}
    value = part.get(field)
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None
