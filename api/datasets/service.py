"""Parsing, storing and listing uploaded datasets (no FastAPI here)."""

from __future__ import annotations

import secrets
from pathlib import PurePosixPath, PureWindowsPath
from typing import BinaryIO

from sqlalchemy import select
from sqlalchemy.orm import Session

from api.datasets.schemas import DatasetList, DatasetOut
from api.errors import Conflict, NotFound, PayloadTooLarge, Unprocessable
from api.storage import check_upload_fits
from core.artifacts import ArtifactStore
from core.config import Settings
from core.models import Dataset, Job, JobStatus
from training.spec import Task
from training.tabular import DatasetError, DatasetLimits, DatasetTooLarge, Table, read_csv, read_npz

ZIP_MAGIC = b"PK\x03\x04"  # an .npz is a zip archive
MAX_LISTED = 100
READ_CHUNK_BYTES = 1 << 20


def upload_too_large(limit: int) -> PayloadTooLarge:
    """The 413 for an upload over `limit` bytes."""
    return PayloadTooLarge(
        f"the uploaded file is larger than the limit of {limit:,} bytes (TRAINCTL_MAX_UPLOAD_BYTES)",
    )


def read_upload(stream: BinaryIO, limit: int) -> bytes:
    """The uploaded bytes, read in chunks (one read of `limit` bytes would reserve all of them at once)."""
    chunks: list[bytes] = []
    size = 0
    while size <= limit and (chunk := stream.read(READ_CHUNK_BYTES)):
        chunks.append(chunk)
        size += len(chunk)
    if size > limit:  # one chunk over is enough to know it is too large
        raise upload_too_large(limit)
    return b"".join(chunks)


def _display_name(filename: str | None) -> str:
    """The client's file name without any folders (it is shown, never used as a path)."""
    name = PureWindowsPath(PurePosixPath(filename or "upload").name).name
    name = "".join(char for char in name if char.isprintable())
    return (name or "upload")[:255]


def _format_of(filename: str, data: bytes) -> str:
    suffix = filename.lower().rsplit(".", 1)[-1] if "." in filename else ""
    if suffix in ("csv", "npz"):
        return suffix
    return "npz" if data.startswith(ZIP_MAGIC) else "csv"


def _to_out(row: Dataset) -> DatasetOut:
    return DatasetOut(
        id=row.id,
        filename=row.filename,
        format="npz" if row.format == "npz" else "csv",
        rows=row.rows,
        columns=row.columns,
        example_shape=row.example_shape or [row.columns],
        task=Task(row.task),
        classes=row.classes,
        target=row.target,
        size_bytes=row.size_bytes,
        created_at=row.created_at,
    )


def _parse(data: bytes, *, fmt: str, target: str | None, task: Task | None, settings: Settings) -> Table:
    if fmt == "npz" and target is not None:
        raise Unprocessable.for_field("target", "target names a CSV column; an .npz always holds X and y")
    limits = DatasetLimits(
        max_dataset_rows=settings.max_dataset_rows,
        max_dataset_features=settings.max_dataset_features,
        max_dataset_bytes=settings.max_dataset_bytes,
    )
    try:
        return read_npz(data, task, limits) if fmt == "npz" else read_csv(data, target, task, limits)
    except DatasetTooLarge as error:
        raise Unprocessable.for_field("file", f"{error} (TRAINCTL_{error.setting.upper()})") from None
    except DatasetError as error:
        raise Unprocessable.for_field("file", str(error)) from None


def upload_dataset(
    session: Session,
    *,
    owner: str,
    filename: str | None,
    data: bytes,
    target: str | None,
    task: Task | None,
    artifacts: ArtifactStore,
    settings: Settings,
) -> DatasetOut:
    """Check and parse an upload, store its bytes under a generated key, and record it."""
    if len(data) > settings.max_upload_bytes:
        raise upload_too_large(settings.max_upload_bytes)
    if not data:
        raise Unprocessable.for_field("file", "the uploaded file is empty")
    name = _display_name(filename)
    fmt = _format_of(name, data)
    table = _parse(data, fmt=fmt, target=target, task=task, settings=settings)
    rows = len(table.X)
    check_upload_fits(session, owner=owner, settings=settings, size=len(data))
    dataset_id = "ds_" + secrets.token_hex(8)
    key = artifacts.put_bytes(data, f"datasets/{dataset_id}.{fmt}")
    row = Dataset(
        id=dataset_id,
        owner=owner,
        filename=name,
        format=fmt,
        uri=key,
        target=target,
        rows=rows,
        columns=int(table.X.shape[-1]),
        example_shape=[int(size) for size in table.X.shape[1:]],
        task=table.task.value,
        classes=table.classes,
        size_bytes=len(data),
    )
    session.add(row)
    try:
        session.commit()
    except BaseException:
        session.rollback()
        artifacts.delete_prefix(key)  # no file without its row
        raise
    return _to_out(row)


def list_datasets(session: Session, *, owner: str) -> DatasetList:
    """The owner's most recent datasets, newest first."""
    rows = session.scalars(
        select(Dataset)
        .where(Dataset.owner == owner)
        .order_by(Dataset.created_at.desc(), Dataset.id.desc())
        .limit(MAX_LISTED)
    )
    return DatasetList(items=[_to_out(row) for row in rows])


def get_dataset(session: Session, *, owner: str, dataset_id: str) -> DatasetOut:
    """One of the owner's datasets; NotFound for missing and foreign ones alike."""
    row = session.scalar(select(Dataset).where(Dataset.id == dataset_id, Dataset.owner == owner))
    if row is None:
        raise NotFound(f"no dataset with id {dataset_id!r}")
    return _to_out(row)


def delete_dataset(session: Session, *, owner: str, dataset_id: str, artifacts: ArtifactStore) -> None:
    """Delete an upload and its file; Conflict while a queued or running job trains on it."""
    row = session.scalar(select(Dataset).where(Dataset.id == dataset_id, Dataset.owner == owner))
    if row is None:
        raise NotFound(f"no dataset with id {dataset_id!r}")
    users = session.scalars(
        select(Job.id)
        .where(
            Job.owner == owner,
            Job.status.in_([JobStatus.queued, JobStatus.running]),
            Job.spec[("dataset", "id")].as_string() == dataset_id,
        )
        .limit(4)
    ).all()
    if users:
        more = ", ..." if len(users) > 3 else ""
        raise Conflict(
            f"dataset {dataset_id} is used by unfinished jobs ({', '.join(users[:3])}{more}); "
            "wait for them to end or cancel them"
        )
    uri = row.uri
    session.delete(row)
    session.commit()
    artifacts.delete_prefix(uri)
