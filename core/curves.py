"""The per-job curve store: a finished job's numeric top-level epoch fields as packed arrays, for compare.

A job's epochs are written only while it runs (every write is fenced on status running), and a finished
job never runs again, so the arrays stored when it finishes stay exactly those of its epoch_metric rows.
Packed little-endian binary (int64 epochs, float64 values, NaN where there is no finite number) because
compare reads 100,000 values at a time: JSON arrays of them cost more to print and parse than the query.
"""

from __future__ import annotations

import math
import sys
from array import array
from collections.abc import Iterable
from typing import Any

from sqlalchemy import delete, insert, select
from sqlalchemy.orm import Session

from core.models import EpochMetric, JobCurve, JobCurveField

Series = dict[str, list[float | None]]


def finite_number(value: Any) -> float | None:
    """The value as a float when it is a finite number (not a bool), else None."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    try:
        number = float(value)
    except OverflowError:  # an int beyond float range: storing a job's curves must never fail its finish
        return None
    return number if math.isfinite(number) else None


def curve_arrays(records: Iterable[tuple[int, dict[str, Any]]]) -> tuple[list[int], Series]:
    """(epochs, {field: value per epoch}) from (epoch, record) in epoch order.

    Only fields with a finite number in some record are kept; elsewhere a value is None, as is any field
    left out (a reader gives it None at every epoch).
    """
    epochs: list[int] = []
    series: Series = {}
    for index, (epoch, record) in enumerate(records):
        epochs.append(epoch)
        for field, raw in record.items():
            if finite_number(raw) is not None:
                series.setdefault(field, [None] * index)
        for field, values in series.items():
            values.append(finite_number(record.get(field)))
    return epochs, series


def _packed(typecode: str, values: Iterable[Any]) -> bytes:
    packed = array(typecode, values)
    if sys.byteorder == "big":
        packed.byteswap()
    return packed.tobytes()


def _unpacked(typecode: str, data: bytes) -> array[Any]:
    unpacked = array(typecode)
    unpacked.frombytes(data)
    if sys.byteorder == "big":
        unpacked.byteswap()
    return unpacked


def pack_epochs(epochs: list[int]) -> bytes:
    """Epochs as little-endian int64."""
    return _packed("q", epochs)


def unpack_epochs(data: bytes) -> list[int]:
    """pack_epochs reversed."""
    return _unpacked("q", data).tolist()


def pack_values(values: list[float | None]) -> bytes:
    """Values as little-endian float64, NaN for None (a stored value is never NaN itself)."""
    return _packed("d", (math.nan if value is None else value for value in values))


def unpack_values(data: bytes) -> list[float | None]:
    """pack_values reversed."""
    values: list[float | None] = _unpacked("d", data).tolist()
    if any(map(math.isnan, values)):  # type: ignore[arg-type]
        return [None if value != value else value for value in values]
    return values


def curve_rows(
    job_id: str, records: Iterable[tuple[int, dict[str, Any]]]
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """The job_curve row and job_curve_field rows of a job's (epoch, record) in epoch order."""
    epochs, series = curve_arrays(records)
    fields = [
        {"job_id": job_id, "field": name, "series": pack_values(values)} for name, values in series.items()
    ]
    return {"job_id": job_id, "epochs": pack_epochs(epochs)}, fields


def store_curves(session: Session, job_id: str) -> None:
    """Write (or rewrite) the job's curve rows from its epoch rows, in the caller's transaction."""
    records = session.execute(
        select(EpochMetric.epoch, EpochMetric.record)
        .where(EpochMetric.job_id == job_id)
        .order_by(EpochMetric.epoch)
    )
    curve, fields = curve_rows(job_id, ((epoch, record) for epoch, record in records))
    session.execute(delete(JobCurveField).where(JobCurveField.job_id == job_id))
    session.execute(delete(JobCurve).where(JobCurve.job_id == job_id))
    session.execute(insert(JobCurve).values(curve))
    if fields:
        session.execute(insert(JobCurveField), fields)
