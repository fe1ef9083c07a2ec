"""Checks a spec against the service: its dataset must be usable here, and it must fit the limits."""

from __future__ import annotations

import math
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from api.errors import Unprocessable
from api.specs.schemas import SpecReport
from core.config import Settings
from core.models import Dataset
from training.spec import (
    CNNNetwork,
    FieldError,
    FileDatasetSpec,
    JobSpec,
    RNNNetwork,
    SpecWarning,
    Task,
    UploadedDatasetSpec,
    count_parameters,
    data_kind,
    dataset_info,
    example_shape,
    lint,
)
from training.spec.memory import MemoryEstimate, dataset_rows, estimate_memory, format_bytes


@dataclass(frozen=True)
class DataShape:
    """What the network's input and output layers must look like."""

    example_shape: tuple[int, ...]  # (features,), (steps, features) or (channels, height, width)
    outputs: int
    kind: str  # table, sequence or image
    rows: int
    feature_scale: float | None = None

    @property
    def features(self) -> int:
        """Inputs per example (per time step for sequences)."""
        return self.example_shape[-1] if self.kind == "sequence" else math.prod(self.example_shape)


def _uploaded_shape(session: Session, *, owner: str, spec: JobSpec, dataset_id: str) -> DataShape:
    row = session.scalar(select(Dataset).where(Dataset.id == dataset_id, Dataset.owner == owner))
    if row is None:
        raise Unprocessable.for_field(
            "spec.dataset.id", f"no uploaded dataset with id {dataset_id!r}; list yours with GET /v1/datasets"
        )
    shape = tuple(row.example_shape or [row.columns])
    if 0 in shape:  # stored before uploads with empty dimensions were refused
        raise Unprocessable.for_field(
            "spec.dataset.id",
            f"dataset {dataset_id} has examples of shape {list(shape)}, with nothing to learn from: "
            "upload it again with at least one feature column and time step",
        )
    kind = "sequence" if len(shape) == 2 else "table"
    network = spec.network
    if isinstance(network, RNNNetwork) and kind != "sequence":
        raise Unprocessable.for_field(
            "spec.network.type",
            f"network type rnn needs sequences, an .npz whose X has shape (N, T, F); dataset {dataset_id} "
            f"holds examples of shape {list(shape)}",
        )
    if isinstance(network, CNNNetwork) and kind != "sequence":
        raise Unprocessable.for_field(
            "spec.network.type",
            f"network type cnn needs images or sequences; dataset {dataset_id} holds examples of shape "
            f"{list(shape)} (uploads are tables, or sequences: an .npz whose X has shape (N, T, F))",
        )
    # A regression upload may hold several targets; one is the common case and only sizes the count.
    outputs = row.classes if row.task == Task.classification and row.classes else 1
    return DataShape(example_shape=shape, outputs=outputs, kind=kind, rows=row.rows)


def resolve_data_shape(session: Session, *, owner: str, spec: JobSpec) -> DataShape:
    """Shape of the spec's data; 422 for server paths, unknown or foreign uploads, and misfit networks."""
    dataset = spec.dataset
    if isinstance(dataset, FileDatasetSpec):
        # A path would make the server read its own files on a client's say-so.
        raise Unprocessable.for_field(
            "spec.dataset.path",
            "the service does not read files by path; upload the file with POST /v1/datasets "
            'and refer to it as {"id": "<dataset id>"}',
        )
    if isinstance(dataset, UploadedDatasetSpec):
        return _uploaded_shape(session, owner=owner, spec=spec, dataset_id=dataset.id)
    info, kind, shape = dataset_info(dataset), data_kind(dataset), example_shape(dataset)
    rows = dataset_rows(spec)
    if info is None or kind is None or shape is None or rows is None:  # unreachable: every name is known
        raise Unprocessable.for_field("spec.dataset", "the service does not know this dataset's shape")
    return DataShape(
        example_shape=shape, outputs=info.outputs, kind=kind, rows=rows, feature_scale=info.feature_scale
    )


def network_parameters(spec: JobSpec, shape: DataShape) -> int:
    """Trainable parameters of the spec's network on data of this shape; 422 if a cnn shrinks it away."""
    try:
        return count_parameters(spec, input_shape=shape.example_shape, outputs=shape.outputs)
    except ValueError as error:
        raise Unprocessable.for_field("spec.network", str(error)) from None


MEMORY_FIELDS = {"dataset": "spec.dataset", "network": "spec.network", "batch": "spec.training.batch_size"}
MEMORY_ADVICE = {
    "dataset": "use fewer samples or shorter sequences",
    "network": "use fewer or narrower layers",
    "batch": "use a smaller training.batch_size or narrower layers",
}


def estimate_job_memory(spec: JobSpec, shape: DataShape, parameters: int) -> MemoryEstimate:
    """The job's estimated peak memory on data of this shape."""
    return estimate_memory(
        spec, rows=shape.rows, example_shape=shape.example_shape, outputs=shape.outputs, parameters=parameters
    )


def _memory_error(memory: MemoryEstimate, limit: int) -> FieldError:
    part = memory.largest_part
    return FieldError(
        field=MEMORY_FIELDS[part],
        message=f"this job needs about {format_bytes(memory.peak)} of memory at its peak (loading the data "
        f"{format_bytes(memory.data_loading)}; training: data {format_bytes(memory.data)}, network and "
        f"optimizer {format_bytes(memory.model)}, activations {format_bytes(memory.activations)}); the limit "
        f"is {format_bytes(limit)} (TRAINCTL_MAX_JOB_MEMORY): {MEMORY_ADVICE[part]}",
    )


def check_limits(spec: JobSpec, *, shape: DataShape, settings: Settings) -> tuple[int, MemoryEstimate]:
    """Parameter count and memory estimate; one 422 naming every field over a service limit."""
    errors: list[FieldError] = []
    if spec.training.epochs > settings.max_epochs:
        errors.append(
            FieldError(
                field="spec.training.epochs",
                message=f"{spec.training.epochs} epochs is over this service's limit of "
                f"{settings.max_epochs} (TRAINCTL_MAX_EPOCHS)",
            )
        )
    parameters = network_parameters(spec, shape)
    if parameters > settings.max_parameters:
        errors.append(
            FieldError(
                field="spec.network",
                message=f"this network has {parameters:,} trainable parameters; the limit is "
                f"{settings.max_parameters:,} (TRAINCTL_MAX_PARAMETERS): use fewer or narrower layers",
            )
        )
    memory = estimate_job_memory(spec, shape, parameters)
    limit = settings.resolved_max_job_memory
    if memory.peak > limit:
        errors.append(_memory_error(memory, limit))
    if errors:
        raise Unprocessable("; ".join(f"{error.field}: {error.message}" for error in errors), errors=errors)
    return parameters, memory


def check_spec(
    session: Session, *, owner: str, spec: JobSpec, settings: Settings
) -> tuple[DataShape, int, list[SpecWarning]]:
    """Everything submission needs to know: data shape, parameter count, lint warnings (or a 422)."""
    shape = resolve_data_shape(session, owner=owner, spec=spec)
    parameters, _memory = check_limits(spec, shape=shape, settings=settings)
    sequence_length = shape.example_shape[0] if shape.kind == "sequence" else None
    warnings = lint(spec, feature_scale=shape.feature_scale, sequence_length=sequence_length)
    return shape, parameters, warnings


def validate_spec(session: Session, *, owner: str, spec: JobSpec, settings: Settings) -> SpecReport:
    """The normalized spec, warnings and parameter count; stores nothing."""
    shape, parameters, warnings = check_spec(session, owner=owner, spec=spec, settings=settings)
    return SpecReport(
        spec=spec,
        warnings=warnings,
        parameters=parameters,
        features=shape.features,
        outputs=shape.outputs,
        peak_memory_bytes=estimate_job_memory(spec, shape, parameters).peak,
    )
