"""Which data a job trains on: built-in, synthetic, sequence, file or uploaded datasets."""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    Discriminator,
    Field,
    Tag,
    field_validator,
    model_validator,
)

from training.spec.base import MAX_SAMPLES, SpecModel


class BuiltinDataset(StrEnum):
    """Real datasets that ship inside scikit-learn (no download)."""

    digits = "digits"
    iris = "iris"
    wine = "wine"
    breast_cancer = "breast_cancer"
    diabetes = "diabetes"


class SyntheticDataset(StrEnum):
    """Datasets generated from a seed."""

    xor = "xor"
    moons = "moons"
    circles = "circles"
    spirals = "spirals"
    blobs = "blobs"
    sine = "sine"


class SequenceDataset(StrEnum):
    """Generated sequence datasets (for recurrent networks)."""

    adding = "adding"
    parity = "parity"
    sine_sequence = "sine_sequence"


class Task(StrEnum):
    """What the network predicts."""

    classification = "classification"
    regression = "regression"


DataKind = Literal["table", "sequence", "image"]


def example_kind(example_shape: tuple[int, ...]) -> DataKind:
    """What one example of this shape is: (features,), (time steps, features) or (C, H, W)."""
    kinds: dict[int, DataKind] = {1: "table", 2: "sequence", 3: "image"}
    return kinds[len(example_shape)]


class DatasetInfo(BaseModel):
    """Shape of a built-in dataset, known without loading it (for lint and parameter counts)."""

    features: int
    outputs: int
    task: Task
    feature_scale: float  # largest absolute feature value: far from 1 means inputs need scaling
    kind: DataKind = "table"


DATASET_INFO: dict[str, DatasetInfo] = {
    "digits": DatasetInfo(features=64, outputs=10, task=Task.classification, feature_scale=16.0),
    "iris": DatasetInfo(features=4, outputs=3, task=Task.classification, feature_scale=7.9),
    "wine": DatasetInfo(features=13, outputs=3, task=Task.classification, feature_scale=1680.0),
    "breast_cancer": DatasetInfo(features=30, outputs=2, task=Task.classification, feature_scale=4254.0),
    "diabetes": DatasetInfo(features=10, outputs=1, task=Task.regression, feature_scale=0.2),
    "xor": DatasetInfo(features=2, outputs=2, task=Task.classification, feature_scale=1.5),
    "moons": DatasetInfo(features=2, outputs=2, task=Task.classification, feature_scale=2.5),
    "circles": DatasetInfo(features=2, outputs=2, task=Task.classification, feature_scale=1.5),
    "spirals": DatasetInfo(features=2, outputs=3, task=Task.classification, feature_scale=1.5),
    "blobs": DatasetInfo(features=2, outputs=3, task=Task.classification, feature_scale=12.0),
    "sine": DatasetInfo(features=1, outputs=1, task=Task.regression, feature_scale=3.2),
    "adding": DatasetInfo(features=2, outputs=1, task=Task.regression, feature_scale=1.0, kind="sequence"),
    "parity": DatasetInfo(
        features=1, outputs=2, task=Task.classification, feature_scale=1.0, kind="sequence"
    ),
    "sine_sequence": DatasetInfo(
        features=1, outputs=1, task=Task.regression, feature_scale=1.5, kind="sequence"
    ),
}
DIGITS_IMAGE = (1, 8, 8)


class SplitOptions(SpecModel):
    """How a dataset is split; shared by every dataset kind."""

    validation_fraction: float = Field(
        0.2, ge=0.0, lt=1.0, description="Share of examples held out for validation.", examples=[0.2]
    )
    test_fraction: float = Field(
        0.2, ge=0.0, lt=1.0, description="Share of examples held out for the final test.", examples=[0.2]
    )

    @model_validator(mode="after")
    def _fractions_leave_training_data(self) -> SplitOptions:
        if self.validation_fraction + self.test_fraction > 0.9:
            raise ValueError(
                "validation_fraction + test_fraction must be at most 0.9, to leave data to train on"
            )
        return self


class BuiltinDatasetSpec(SplitOptions):
    """A real dataset shipped with scikit-learn."""

    name: BuiltinDataset = Field(description="Built-in dataset name.", examples=["digits"])
    as_images: bool = Field(
        False, description="digits only: give the network 1x8x8 images (for a cnn) instead of 64 features."
    )

    @model_validator(mode="after")
    def _images_only_for_digits(self) -> BuiltinDatasetSpec:
        if self.as_images and self.name != BuiltinDataset.digits:
            raise ValueError(f"as_images applies to digits only; {self.name} is a table of features")
        return self


class SyntheticDatasetSpec(SplitOptions):
    """A generated dataset: the same seed always gives the same data."""

    name: SyntheticDataset = Field(description="Synthetic generator name.", examples=["moons"])
    samples: int = Field(
        1000, ge=10, le=MAX_SAMPLES, description="Number of examples.", examples=[1000], strict=True
    )
    noise: float = Field(
        0.1, ge=0.0, le=10.0, description="Standard deviation of added noise.", examples=[0.1]
    )
    seed: int = Field(0, ge=0, description="Seed of the generator.", examples=[0], strict=True)


class SequenceDatasetSpec(SplitOptions):
    """A generated sequence problem: adding (regression), parity (classification), sine_sequence."""

    name: SequenceDataset = Field(description="Sequence generator name.", examples=["adding"])
    length: int = Field(50, ge=2, le=2000, description="Time steps per sequence.", examples=[50], strict=True)
    samples: int = Field(
        2000, ge=10, le=MAX_SAMPLES, description="Number of sequences.", examples=[2000], strict=True
    )
    noise: float = Field(0.0, ge=0.0, le=10.0, description="Standard deviation of added noise.")
    seed: int = Field(0, ge=0, description="Seed of the generator.", examples=[0], strict=True)


class FileDatasetSpec(SplitOptions):
    """A local file: CSV with a header row, or .npz holding arrays X and y."""

    path: str = Field(description="Path to a .csv or .npz file.", examples=["data.csv"])
    target: str | None = Field(
        None, description="CSV column holding the target (default: the last column).", examples=["label"]
    )
    task: Task | None = Field(
        None,
        description="Override the inferred task (integer targets with few values: classification).",
        examples=["classification"],
    )

    @field_validator("path")
    @classmethod
    def _known_suffix(cls, path: str) -> str:
        if not path.lower().endswith((".csv", ".npz")):
            raise ValueError("path must end in .csv or .npz")
        return path


class UploadedDatasetSpec(SplitOptions):
    """A dataset uploaded to the service (POST /v1/datasets)."""

    id: str = Field(description="Id returned by the upload.", examples=["ds_4f1c2a"])


def _dataset_spec_tag(value: Any) -> str | None:
    """Which DatasetSpec model a value is, by the keys present, so errors speak about the right one."""
    get = value.get if isinstance(value, dict) else lambda key, default=None: getattr(value, key, default)
    if get("path") is not None:
        return "file"
    if get("id") is not None:
        return "upload"
    name = str(get("name"))
    if name in set(SyntheticDataset):
        return "synthetic"
    if name in set(SequenceDataset):
        return "sequence"
    return "builtin" if name in set(BuiltinDataset) else None


DatasetSpec = Annotated[
    Annotated[BuiltinDatasetSpec, Tag("builtin")]
    | Annotated[SyntheticDatasetSpec, Tag("synthetic")]
    | Annotated[SequenceDatasetSpec, Tag("sequence")]
    | Annotated[FileDatasetSpec, Tag("file")]
    | Annotated[UploadedDatasetSpec, Tag("upload")],
    Discriminator(
        _dataset_spec_tag,
        custom_error_type="unknown_dataset",
        custom_error_message=(
            "dataset needs a name (built-in: "
            + ", ".join(BuiltinDataset)
            + "; synthetic: "
            + ", ".join(SyntheticDataset)
            + "; sequence: "
            + ", ".join(SequenceDataset)
            + "), a path (.csv or .npz) or an uploaded dataset id"
        ),
    ),
]


def dataset_info(spec: DatasetSpec) -> DatasetInfo | None:
    """Features, outputs, task and kind of a named dataset; None for files and uploads."""
    return DATASET_INFO.get(str(getattr(spec, "name", "")))


def data_kind(spec: DatasetSpec) -> DataKind | None:
    """table, sequence or image when known from the spec alone; None for files and uploads."""
    if isinstance(spec, BuiltinDatasetSpec) and spec.as_images:
        return "image"
    info = dataset_info(spec)
    return info.kind if info else None
