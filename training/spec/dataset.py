"""Which data a job trains on: built-in, benchmark, synthetic, sequence, file or uploaded datasets."""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    Discriminator,
    Field,
    ModelWrapValidatorHandler,
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


class DownloadedDataset(StrEnum):
    """Standard image benchmarks, downloaded once into the dataset cache and verified by SHA-256."""

    mnist = "mnist"
    fashion_mnist = "fashion_mnist"
    cifar10 = "cifar10"


MNIST1D = "mnist1d"


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
    # the package standardizes the whole set; its largest |x| with the default arguments is 5.5
    MNIST1D: DatasetInfo(features=40, outputs=10, task=Task.classification, feature_scale=5.5),
    "mnist": DatasetInfo(features=784, outputs=10, task=Task.classification, feature_scale=255.0),
    "fashion_mnist": DatasetInfo(features=784, outputs=10, task=Task.classification, feature_scale=255.0),
    "cifar10": DatasetInfo(features=3072, outputs=10, task=Task.classification, feature_scale=255.0),
}
DIGITS_IMAGE = (1, 8, 8)
IMAGE_SHAPES: dict[str, tuple[int, int, int]] = {
    "digits": DIGITS_IMAGE,
    "mnist": (1, 28, 28),
    "fashion_mnist": (1, 28, 28),
    "cifar10": (3, 32, 32),
}
MNIST1D_LENGTH = 40  # time steps of one MNIST-1D signal


class ValidationSplit(SpecModel):
    """The validation share; benchmarks with an official test set are split by this alone."""

    validation_fraction: float = Field(
        0.2, ge=0.0, le=0.9, description="Share of examples held out for validation.", examples=[0.2]
    )


class OfficialSplits(ValidationSplit):
    """A benchmark whose test split is its official test set: validation is carved from its training set."""

    @model_validator(mode="wrap")
    @classmethod
    def _no_test_fraction(cls, value: Any, handler: ModelWrapValidatorHandler[Any]) -> Any:
        # before the unknown-key check, which would only say that test_fraction is not a key here
        if isinstance(value, dict) and "test_fraction" in value:
            raise ValueError(
                f"{value.get('name')} keeps its official test set as the test split, so results compare "
                "with published ones: remove test_fraction (validation_fraction still applies)"
            )
        return handler(value)


class SplitOptions(ValidationSplit):
    """How a dataset is split; shared by every dataset kind without an official test set."""

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


class MNIST1DDatasetSpec(OfficialSplits):
    """MNIST-1D (Greydanus & Kobak, 2024), generated offline by the mnist1d package; the paper's set."""

    name: Literal["mnist1d"] = Field(
        description="MNIST-1D: 10 classes of 40-sample 1-D signals.", examples=["mnist1d"]
    )
    as_sequence: bool = Field(
        False,
        description="Give the network 40 steps × 1 feature (rnn, 1-D cnn) instead of 40 features.",
    )
    shuffle_seq: bool = Field(
        False, description="The paper's spatially shuffled variant: one fixed permutation of the 40 steps."
    )
    samples: int = Field(
        5000,
        ge=100,
        le=MAX_SAMPLES,
        description="Examples generated (a multiple of 10); the last 20% are the test split. "
        "The paper's set: 5000 (4000 train, 1000 test).",
    )
    seed: int = Field(42, ge=0, description="Seed of the generator; the paper's set: 42.")

    @property
    def is_paper_set(self) -> bool:
        """Whether this is the set the paper's table was measured on."""
        return self.samples == 5000 and self.seed == 42


class DownloadedDatasetSpec(OfficialSplits):
    """MNIST, Fashion-MNIST or CIFAR-10, fetched once into the dataset cache; official test set."""

    name: DownloadedDataset = Field(description="Image benchmark name.", examples=["mnist"])
    as_images: bool = Field(
        False, description="Give the network images (C, H, W) for a cnn, instead of flattened pixels."
    )


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
    if name == MNIST1D:
        return "mnist1d"
    if name in set(DownloadedDataset):
        return "downloaded"
    if name in set(SyntheticDataset):
        return "synthetic"
    if name in set(SequenceDataset):
        return "sequence"
    return "builtin" if name in set(BuiltinDataset) else None


DatasetSpec = Annotated[
    Annotated[BuiltinDatasetSpec, Tag("builtin")]
    | Annotated[MNIST1DDatasetSpec, Tag("mnist1d")]
    | Annotated[DownloadedDatasetSpec, Tag("downloaded")]
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
            + "; benchmarks: mnist1d, "
            + ", ".join(DownloadedDataset)
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
    if isinstance(spec, BuiltinDatasetSpec | DownloadedDatasetSpec) and spec.as_images:
        return "image"
    if isinstance(spec, MNIST1DDatasetSpec) and spec.as_sequence:
        return "sequence"
    info = dataset_info(spec)
    return info.kind if info else None


def example_shape(spec: DatasetSpec) -> tuple[int, ...] | None:
    """One example's shape known from the spec alone, (F,), (T, F) or (C, H, W); None for files, uploads."""
    info, kind = dataset_info(spec), data_kind(spec)
    if info is None or kind is None:
        return None
    if kind == "image":
        return IMAGE_SHAPES[str(getattr(spec, "name", ""))]
    if isinstance(spec, MNIST1DDatasetSpec):
        return (MNIST1D_LENGTH, 1) if spec.as_sequence else (MNIST1D_LENGTH,)
    if isinstance(spec, SequenceDatasetSpec):
        return (spec.length, info.features)
    return (info.features,)
