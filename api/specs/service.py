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
    DIGITS_IMAGE,
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
    lint,
)


@dataclass(frozen=True)
class DataShape:
    """What the network's input and output layers must look like."""

    example_shape: tuple[int, ...]  # (features,), (steps, features) or (channels, height, width)
    outputs: int
    kind: str  # table, sequence or image
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
    example_shape = tuple(row.example_shape or [row.columns])
    kind = "sequence" if len(example_shape) == 2 else "table"
    network = spec.network
    if isinstance(network, RNNNetwork) and kind != "sequence":
        raise Unprocessable.for_field(
            "spec.network.type",
            f"network type rnn needs sequences, an .npz whose X has shape (N, T, F); dataset {dataset_id} "
            f"holds examples of shape {list(example_shape)}",
        )
    if isinstance(network, CNNNetwork):
        raise Unprocessable.for_field(
            "spec.network.type", "network type cnn needs images; uploaded datasets are tables or sequences"
        )
    # A regression upload may hold several targets; one is the common case and only sizes the count.
    outputs = row.classes if row.task == Task.classification and row.classes else 1
    return DataShape(example_shape=example_shape, outputs=outputs, kind=kind)


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
    info = dataset_info(dataset)
    kind = data_kind(dataset)
    if info is None or kind is None:  # unreachable while every named dataset is in DATASET_INFO
        raise Unprocessable.for_field("spec.dataset", "the service does not know this dataset's shape")
    example_shape: tuple[int, ...] = (info.features,)
    if kind == "image":
        example_shape = DIGITS_IMAGE
    elif kind == "sequence":
        example_shape = (int(getattr(dataset, "length", 1)), info.features)
    return DataShape(
        example_shape=example_shape, outputs=info.outputs, kind=kind, feature_scale=info.feature_scale
    )


def network_parameters(spec: JobSpec, shape: DataShape) -> int:
    """Trainable parameters of the spec's network on data of this shape."""
    # An rnn reads one time step at a time; mlp and cnn see the whole example.
    per_step = isinstance(spec.network, RNNNetwork)
    features = shape.example_shape[-1] if per_step else math.prod(shape.example_shape)
    dims = shape.example_shape
    image = (dims[0], dims[1], dims[2]) if len(dims) == 3 else None
    return count_parameters(spec, features=features, outputs=shape.outputs, image_shape=image)


def check_limits(spec: JobSpec, *, shape: DataShape, settings: Settings) -> int:
    """The network's parameter count; 422 naming every field over a service limit."""
    problems = []
    if spec.training.epochs > settings.max_epochs:
        problems.append(
            FieldError(
                field="spec.training.epochs",
                message=f"{spec.training.epochs} epochs is over this service's limit of "
                f"{settings.max_epochs} (TRAINCTL_MAX_EPOCHS)",
            )
        )
    parameters = network_parameters(spec, shape)
    if parameters > settings.max_parameters:
        problems.append(
            FieldError(
                field="spec.network",
                message=f"this network has {parameters:,} trainable parameters; the limit is "
                f"{settings.max_parameters:,} (TRAINCTL_MAX_PARAMETERS): use fewer or narrower layers",
            )
        )
    if problems:
        detail = "; ".join(f"{problem.field}: {problem.message}" for problem in problems)
        raise Unprocessable(detail, errors=problems)
    return parameters


def check_spec(
    session: Session, *, owner: str, spec: JobSpec, settings: Settings
) -> tuple[DataShape, int, list[SpecWarning]]:
    """Everything submission needs to know: data shape, parameter count, lint warnings (or a 422)."""
    shape = resolve_data_shape(session, owner=owner, spec=spec)
    parameters = check_limits(spec, shape=shape, settings=settings)
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
    )
