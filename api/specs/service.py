"""Checks a spec against the service: its dataset must be usable here, and it must fit the limits."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from api.config import Settings
from api.errors import Unprocessable
from api.models import Dataset
from api.specs.schemas import SpecReport
from training.spec import (
    FileDatasetSpec,
    JobSpec,
    SpecWarning,
    Task,
    UploadedDatasetSpec,
    count_parameters,
    dataset_shape,
    lint,
)


@dataclass(frozen=True)
class DataShape:
    """What the network's input and output layers must look like."""

    features: int
    outputs: int
    feature_scale: float | None


def resolve_data_shape(session: Session, *, owner: str, spec: JobSpec) -> DataShape:
    """Features and outputs of the spec's dataset; 422 for server paths and unknown or foreign uploads."""
    dataset = spec.dataset
    if isinstance(dataset, FileDatasetSpec):
        # A path would make the server read its own files on a client's say-so.
        raise Unprocessable.for_field(
            "spec.dataset.path",
            "the service does not read files by path; upload the file with POST /v1/datasets "
            'and refer to it as {"id": "<dataset id>"}',
        )
    if isinstance(dataset, UploadedDatasetSpec):
        row = session.scalar(select(Dataset).where(Dataset.id == dataset.id, Dataset.owner == owner))
        if row is None:
            raise Unprocessable.for_field(
                "spec.dataset.id",
                f"no uploaded dataset with id {dataset.id!r}; list yours with GET /v1/datasets",
            )
        # A regression upload may hold several targets; one is the common case and only sizes the count.
        outputs = row.classes if row.task == Task.classification and row.classes else 1
        return DataShape(features=row.columns, outputs=outputs, feature_scale=None)
    info = dataset_shape(spec)
    if info is None:  # unreachable while every built-in and synthetic dataset is in DATASET_INFO
        raise Unprocessable.for_field("spec.dataset", "the service does not know this dataset's shape")
    return DataShape(features=info.features, outputs=info.outputs, feature_scale=info.feature_scale)


def check_limits(spec: JobSpec, *, shape: DataShape, settings: Settings) -> int:
    """The network's parameter count; 422 naming the field when the spec is over a service limit."""
    if spec.training.epochs > settings.max_epochs:
        raise Unprocessable.for_field(
            "spec.training.epochs",
            f"{spec.training.epochs} epochs is over this service's limit of {settings.max_epochs} "
            "(TRAINCTL_MAX_EPOCHS)",
        )
    parameters = count_parameters(spec, features=shape.features, outputs=shape.outputs)
    if parameters > settings.max_parameters:
        raise Unprocessable.for_field(
            "spec.network.hidden_layers",
            f"this network has {parameters:,} trainable parameters; the limit is {settings.max_parameters:,} "
            "(TRAINCTL_MAX_PARAMETERS): use fewer or narrower hidden layers",
        )
    return parameters


def check_spec(
    session: Session, *, owner: str, spec: JobSpec, settings: Settings
) -> tuple[DataShape, int, list[SpecWarning]]:
    """Everything submission needs to know: data shape, parameter count, lint warnings (or a 422)."""
    shape = resolve_data_shape(session, owner=owner, spec=spec)
    parameters = check_limits(spec, shape=shape, settings=settings)
    return shape, parameters, lint(spec, feature_scale=shape.feature_scale)


def validate_spec(session: Session, *, owner: str, spec: JobSpec, settings: Settings) -> SpecReport:
    """The normalized spec, warnings and parameter count; stores nothing."""
    shape, parameters, warnings = check_spec(session, owner=owner, spec=spec, settings=settings)
    return SpecReport(
        spec=spec.model_dump(mode="json"),
        warnings=warnings,
        parameters=parameters,
        features=shape.features,
        outputs=shape.outputs,
    )
