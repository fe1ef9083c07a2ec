"""What a job produced: per-epoch metrics (JSON or CSV), checkpoints, and predictions (no FastAPI here)."""

from __future__ import annotations

import csv
import io
import json
import logging
import math
import os
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
from sqlalchemy import select
from sqlalchemy.orm import Session

from api.errors import Conflict, NotFound, Unprocessable
from api.jobs.schemas import CheckpointInfo, MetricsPage, PredictResponse
from api.jobs.service import owned_job
from core.artifacts import ArtifactStore, checkpoint_key
from core.models import Checkpoint, EpochMetric, Job
from training.records import EpochRecord
from training.spec import JobSpec, final_checkpoint

log = logging.getLogger(__name__)

MODEL_CHECKPOINT = "model"  # names the checkpoint whose weights result.test measured


def stored_record(record: dict[str, Any], fields: list[str] | None = None) -> EpochRecord:
    """A stored record as an EpochRecord, reduced to `fields` (epoch always kept); absent keys stay unset."""
    if fields:
        record = {key: value for key, value in record.items() if key == "epoch" or key in fields}
    return EpochRecord.model_validate(record)


def served_record(record: EpochRecord) -> dict[str, Any]:
    """The record as served: the keys the loop wrote, in EpochRecord's field order (whatever the storage)."""
    return record.model_dump(mode="json", exclude_unset=True)


def job_metrics(
    session: Session,
    *,
    owner: str,
    job_id: str,
    since_epoch: int | None = None,
    fields: list[str] | None = None,
) -> MetricsPage:
    """The job's epoch records after `since_epoch`, reduced to `fields` (epoch is always kept)."""
    owned_job(session, owner=owner, job_id=job_id)
    query = select(EpochMetric.record).where(EpochMetric.job_id == job_id)
    if since_epoch is not None:
        query = query.where(EpochMetric.epoch > since_epoch)
    records = session.scalars(query.order_by(EpochMetric.epoch))
    items = [stored_record(record, fields) for record in records]
    return MetricsPage(job_id=job_id, items=items)


def flatten_record(record: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """One CSV row: nested values get dotted names, layer diagnostics become layers.<name>.<field>."""
    flat: dict[str, Any] = {}
    for key, value in record.items():
        name = f"{prefix}{key}"
        if key == "layers" and isinstance(value, list) and all(isinstance(layer, dict) for layer in value):
            for index, layer in enumerate(value):
                layer_name = layer.get("name", index)
                for field, measure in layer.items():
                    if field != "name":
                        flat[f"{name}.{layer_name}.{field}"] = measure
        elif isinstance(value, dict):
            flat.update(flatten_record(value, prefix=f"{name}."))
        elif isinstance(value, list):
            flat[name] = json.dumps(value)
        else:
            flat[name] = value
    return flat


def metrics_csv(page: MetricsPage) -> str:
    """The records as CSV: one row per epoch; EpochRecord's fields in its order, then layer columns."""
    rows = [flatten_record(served_record(record)) for record in page.items]
    present = {column for row in rows for column in row}
    fields = [name for name in EpochRecord.model_fields if name in present or name == "epoch"]
    columns = list(dict.fromkeys([*fields, *(column for row in rows for column in row)]))
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns, restval="", lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return buffer.getvalue()


def stored_key(row: Checkpoint) -> str:
    """The checkpoint's key in the artifact store (rows may hold the key or a full URL)."""
    if "://" in row.uri or row.uri.startswith("/"):
        return checkpoint_key(row.job_id, row.name)
    return row.uri


def list_checkpoints(session: Session, *, owner: str, job_id: str) -> list[CheckpointInfo]:
    """The job's checkpoints, by name."""
    owned_job(session, owner=owner, job_id=job_id)
    rows = session.scalars(select(Checkpoint).where(Checkpoint.job_id == job_id).order_by(Checkpoint.name))
    return [
        CheckpointInfo(
            name=row.name,
            epoch=row.epoch,
            size_bytes=row.size_bytes,
            updated_at=row.updated_at,
            url=f"/v1/jobs/{job_id}/checkpoints/{row.name}",
        )
        for row in rows
    ]


@dataclass(frozen=True)
class CheckpointDownload:
    """Where a checkpoint's bytes are, and what to call the file."""

    key: str
    filename: str
    size_bytes: int


def model_checkpoint(job: Job) -> str:
    """The checkpoint holding the weights the run ended with, which result.test measured (`best` or `last`).

    A finished job says so in its result; a running one will end with the weights its spec restores.
    """
    measured = (job.result or {}).get("model_checkpoint")
    return str(measured) if measured else final_checkpoint(JobSpec.model_validate(job.spec))


def checkpoint_download(
    session: Session, *, owner: str, job_id: str, name: str, artifacts: ArtifactStore
) -> CheckpointDownload:
    """Locate one checkpoint file of the owner's job (`model`: the one result.test measured)."""
    job = owned_job(session, owner=owner, job_id=job_id)
    if name == MODEL_CHECKPOINT:
        name = model_checkpoint(job)
    row = session.get(Checkpoint, (job_id, name))
    if row is None:
        raise NotFound(
            f"job {job_id} has no checkpoint named {name!r}; list them with GET /v1/jobs/{job_id}/checkpoints"
        )
    key = stored_key(row)
    if not artifacts.exists(key):
        raise NotFound(
            f"checkpoint {name!r} of job {job_id} is recorded but its file is missing from the store"
        )
    return CheckpointDownload(
        key=key, filename=f"{job_id}-{name}.safetensors", size_bytes=artifacts.size(key)
    )


@lru_cache(maxsize=8)
def _load_model(path: str) -> Any:
    # torch is imported here, on the first prediction, never when the API starts.
    import training

    return training.load_model(path)


def _local_copy(row: Checkpoint, *, artifacts: ArtifactStore, cache_dir: Path) -> Path:
    """The checkpoint in the local cache, downloaded when missing or when it changed."""
    folder = cache_dir / row.job_id
    stamp = int(row.updated_at.timestamp() * 1_000_000)
    path = folder / f"{row.name}-{row.epoch}-{stamp}.safetensors"
    if path.exists():
        return path
    partial = folder / f".{path.name}.{os.getpid()}.partial"
    artifacts.get_file(stored_key(row), partial)
    partial.replace(path)  # atomic: a concurrent request never reads half a file
    for stale in folder.glob(f"{row.name}-*.safetensors"):
        if stale != path:
            stale.unlink(missing_ok=True)
    return path


def predict(
    session: Session,
    *,
    owner: str,
    job_id: str,
    inputs: list[list[float]],
    artifacts: ArtifactStore,
    cache_dir: Path,
    checkpoint: str | None = None,
) -> PredictResponse:
    """Outputs of a checkpoint (default: the one result.test measured) for raw feature rows."""
    job = owned_job(session, owner=owner, job_id=job_id)
    name = checkpoint or model_checkpoint(job)
    row = session.get(Checkpoint, (job_id, name))
    if row is None:
        raise Conflict(
            f"job {job_id} ({job.status}) has no {name!r} checkpoint yet; "
            "predict once it has trained an epoch"
        )
    widths = {len(values) for values in inputs}
    if len(widths) != 1:
        raise Unprocessable.for_field("inputs", "every row must have the same number of features")
    if not artifacts.exists(stored_key(row)):
        raise Conflict(f"the {row.name!r} checkpoint of job {job_id} is missing from the artifact store")
    try:
        model = _load_model(str(_local_copy(row, artifacts=artifacts, cache_dir=cache_dir)))
    except Exception as error:  # safetensors, JSON and shape errors alike: the stored file is damaged
        log.warning("checkpoint %s of job %s cannot be read: %s", row.name, job_id, type(error).__name__)
        raise Conflict(
            f"the {row.name!r} checkpoint of job {job_id} cannot be read (damaged in the artifact store); "
            "predict from another job, or train this spec again"
        ) from None
    # Values per example the model reads (sequences and images come as flattened rows).
    width, expected = widths.pop(), math.prod(model.input_shape)
    if width != expected:
        raise Unprocessable.for_field(
            "inputs", f"each row must have {expected} values, like the training data's examples; got {width}"
        )
    try:
        outputs = model.predict(np.asarray(inputs, dtype=np.float32))
    except ValueError as error:
        raise Unprocessable.for_field("inputs", str(error)) from None
    return PredictResponse(job_id=job_id, checkpoint=row.name, epoch=row.epoch, **outputs)
