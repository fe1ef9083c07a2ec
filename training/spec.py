"""The JobSpec contract: what a training job is (pydantic only; importing this never imports torch)."""

from __future__ import annotations

import itertools
from difflib import get_close_matches
from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    Tag,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticUndefined, to_jsonable_python

# Hard ceilings that keep a typo (10^9 epochs, a 10^6-wide layer) from ever reaching a worker.
# The service applies its own, configurable and usually tighter, limits on top.
MAX_EPOCHS = 100_000
MAX_LAYER_WIDTH = 65_536
MAX_HIDDEN_LAYERS = 64
MAX_SAMPLES = 1_000_000


def _examples_from_defaults(schema: dict[str, Any], model: type[BaseModel]) -> None:
    """Give every documented property an example: its default, or the example spec's value."""
    for name, prop in schema.get("properties", {}).items():
        field = model.model_fields.get(name)
        if field is None:
            continue
        if "description" not in prop and isinstance(field.default, str):  # a union's selector key
            prop["description"] = f"Selects {model.__name__}: {(model.__doc__ or '').strip()}"
        if "examples" in prop:
            continue
        if field.default_factory is not None:
            value = field.default_factory()  # type: ignore[call-arg]
        elif field.default is not PydanticUndefined and field.default is not None:
            value = field.default
        elif name in EXAMPLE_SPEC and model is JobSpec:
            value = EXAMPLE_SPEC[name]
        else:
            continue
        prop["examples"] = [to_jsonable_python(value)]
    if model is JobSpec:
        schema["examples"] = [EXAMPLE_SPEC]


class SpecModel(BaseModel):
    """Base of every spec model: unknown keys are errors that list the valid ones."""

    model_config = ConfigDict(
        extra="forbid", validate_default=True, json_schema_extra=_examples_from_defaults
    )

    @model_validator(mode="before")
    @classmethod
    def _no_unknown_keys(cls, data: Any) -> Any:
        if isinstance(data, dict):
            valid = list(cls.model_fields)
            unknown = [key for key in data if key not in cls.model_fields]
            if unknown:
                hints = [
                    f"'{key}' (did you mean '{close[0]}'?)"
                    if (close := get_close_matches(str(key), valid, 1))
                    else f"'{key}'"
                    for key in unknown
                ]
                raise ValueError(f"unknown key {', '.join(hints)}; valid keys: {', '.join(valid)}")
        return data


# ----------------------------------------------------------------------------------------- dataset


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


class Task(StrEnum):
    """What the network predicts."""

    classification = "classification"
    regression = "regression"


class DatasetInfo(BaseModel):
    """Shape of a built-in dataset, known without loading it (for lint and parameter counts)."""

    features: int
    outputs: int
    task: Task
    feature_scale: float  # largest absolute feature value: far from 1 means inputs need scaling


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
}


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


class SyntheticDatasetSpec(SplitOptions):
    """A generated dataset: the same seed always gives the same data."""

    name: SyntheticDataset = Field(description="Synthetic generator name.", examples=["moons"])
    samples: int = Field(1000, ge=10, le=MAX_SAMPLES, description="Number of examples.", examples=[1000])
    noise: float = Field(
        0.1, ge=0.0, le=10.0, description="Standard deviation of added noise.", examples=[0.1]
    )
    seed: int = Field(0, ge=0, description="Seed of the generator.", examples=[0])


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


def _dataset_kind(value: Any) -> str | None:
    """Pick the dataset model by the keys present, so errors speak about the right one."""
    get = value.get if isinstance(value, dict) else lambda key, default=None: getattr(value, key, default)
    if get("path") is not None:
        return "file"
    if get("id") is not None:
        return "upload"
    name = str(get("name"))
    if name in set(SyntheticDataset):
        return "synthetic"
    return "builtin" if name in set(BuiltinDataset) else None


DatasetSpec = Annotated[
    Annotated[BuiltinDatasetSpec, Tag("builtin")]
    | Annotated[SyntheticDatasetSpec, Tag("synthetic")]
    | Annotated[FileDatasetSpec, Tag("file")]
    | Annotated[UploadedDatasetSpec, Tag("upload")],
    Discriminator(
        _dataset_kind,
        custom_error_type="unknown_dataset",
        custom_error_message=(
            "dataset needs a name (built-in: "
            + ", ".join(BuiltinDataset)
            + "; synthetic: "
            + ", ".join(SyntheticDataset)
            + "), a path (.csv or .npz) or an uploaded dataset id"
        ),
    ),
]

# ----------------------------------------------------------------------------------------- network


class MLPNetwork(SpecModel):
    """A multilayer perceptron: linear layers, each hidden one followed by normalization and activation."""

    type: Literal["mlp"] = Field("mlp", description="Network type.")
    hidden_layers: list[Annotated[int, Field(ge=1, le=MAX_LAYER_WIDTH)]] = Field(
        description=f"Width of each hidden layer, input side first (at most {MAX_HIDDEN_LAYERS} layers).",
        max_length=MAX_HIDDEN_LAYERS,
        examples=[[64, 64]],
    )


class Activation(StrEnum):
    """Transfer function of the hidden layers."""

    sigmoid = "sigmoid"
    tanh = "tanh"
    relu = "relu"
    leaky_relu = "leaky_relu"
    elu = "elu"
    gelu = "gelu"
    linear = "linear"


# The chapter's (MATLAB) names, accepted and normalized to the canonical one.
ACTIVATION_ALIASES = {"logsig": "sigmoid", "tansig": "tanh", "poslin": "relu", "purelin": "linear"}
SIGMOID_TYPE = frozenset({Activation.sigmoid, Activation.tanh})
RELU_TYPE = frozenset({Activation.relu, Activation.leaky_relu})


class InitName(StrEnum):
    """Named weight initialization schemes."""

    xavier_uniform = "xavier_uniform"
    xavier_normal = "xavier_normal"
    lecun_normal = "lecun_normal"
    he_normal = "he_normal"
    he_uniform = "he_uniform"
    orthogonal = "orthogonal"
    zeros = "zeros"
    default = "default"


class NormalInit(SpecModel):
    """Weights drawn from N(0, std²)."""

    scheme: Literal["normal"] = "normal"
    std: float = Field(gt=0.0, le=100.0, description="Standard deviation of the weights.", examples=[0.1])


class UniformInit(SpecModel):
    """Weights drawn from U(-limit, limit)."""

    scheme: Literal["uniform"] = "uniform"
    limit: float = Field(gt=0.0, le=100.0, description="Half-width of the interval.", examples=[0.5])


Initialization = InitName | Annotated[NormalInit | UniformInit, Field(discriminator="scheme")]


class InputScaling(StrEnum):
    """Input normalization, fitted on the training split only."""

    none = "none"
    minmax = "minmax"
    zscore = "zscore"


class LayerNormalization(StrEnum):
    """Normalization after each hidden linear layer, before its activation."""

    none = "none"
    batch = "batch"
    layer = "layer"


class Normalization(SpecModel):
    """Input scaling and per-layer normalization."""

    inputs: InputScaling = Field(
        InputScaling.zscore,
        description="minmax: p' = 2(p - min)/(max - min) - 1; zscore: p' = (p - mean)/std; fitted on train.",
    )
    layers: LayerNormalization = Field(LayerNormalization.none, description="Per-layer normalization.")
    momentum: float = Field(
        0.1,
        gt=0.0,
        le=1.0,
        description="Batch norm smoothing, 1 - δ: m̃_k = (1 - momentum) m̃_{k-1} + momentum m_k.",
        examples=[0.1],
    )
    epsilon: float = Field(1e-5, gt=0.0, le=1.0, description="Added to the variance in batch/layer norm.")


# --------------------------------------------------------------------------------------- optimizer

LearningRate = Annotated[float, Field(gt=0.0, le=10.0, description="Step size.", examples=[0.01])]
Eps = Annotated[float, Field(gt=0.0, le=1.0, description="Added to denominators for stability.")]
Beta = Annotated[float, Field(ge=0.0, lt=1.0)]


class StepSchedule(SpecModel):
    """Multiply the learning rate by gamma every step_size epochs."""

    type: Literal["step"] = "step"
    step_size: int = Field(10, ge=1, description="Epochs between decays.")
    gamma: float = Field(0.5, gt=0.0, le=1.0, description="Decay factor.")


class CosineSchedule(SpecModel):
    """Cosine annealing from the initial rate down to min_learning_rate over the run's epochs."""

    type: Literal["cosine"] = "cosine"
    min_learning_rate: float = Field(0.0, ge=0.0, description="Rate reached at the last epoch.")


class PlateauSchedule(SpecModel):
    """Multiply the rate by factor when the validation loss has not improved for patience epochs."""

    type: Literal["plateau"] = "plateau"
    factor: float = Field(0.5, gt=0.0, lt=1.0, description="Decay factor.")
    patience: int = Field(5, ge=0, description="Epochs without improvement before decaying.")
    min_learning_rate: float = Field(0.0, ge=0.0, description="Lower bound of the rate.")


Schedule = Annotated[StepSchedule | CosineSchedule | PlateauSchedule, Field(discriminator="type")]


class _OptimizerBase(SpecModel):
    schedule: Schedule | None = Field(
        None, description="Optional per-epoch learning-rate schedule.", examples=[{"type": "cosine"}]
    )


class SGD(_OptimizerBase):
    """Steepest descent: w ← w - lr·g."""

    name: Literal["sgd"] = "sgd"
    learning_rate: LearningRate = 0.01


class Momentum(_OptimizerBase):
    """Steepest descent with (heavy-ball) momentum."""

    name: Literal["momentum"] = "momentum"
    learning_rate: LearningRate = 0.01
    momentum: float = Field(0.9, ge=0.0, lt=1.0, description="Momentum coefficient.")


class Nesterov(_OptimizerBase):
    """Steepest descent with Nesterov momentum."""

    name: Literal["nesterov"] = "nesterov"
    learning_rate: LearningRate = 0.01
    momentum: float = Field(0.9, gt=0.0, lt=1.0, description="Momentum coefficient.")


class Adam(_OptimizerBase):
    """Adam: steps scaled by running estimates of the gradient moments."""

    name: Literal["adam"] = "adam"
    learning_rate: LearningRate = 0.001
    betas: tuple[Beta, Beta] = Field((0.9, 0.999), description="Decay rates of the moment estimates.")
    eps: Eps = 1e-8


class AdamW(_OptimizerBase):
    """Adam with decoupled weight decay."""

    name: Literal["adamw"] = "adamw"
    learning_rate: LearningRate = 0.001
    betas: tuple[Beta, Beta] = Field((0.9, 0.999), description="Decay rates of the moment estimates.")
    eps: Eps = 1e-8
    weight_decay: float = Field(0.01, ge=0.0, le=1.0, description="Decoupled weight decay.")


class RMSprop(_OptimizerBase):
    """RMSprop: steps scaled by a running RMS of the gradients."""

    name: Literal["rmsprop"] = "rmsprop"
    learning_rate: LearningRate = 0.001
    alpha: float = Field(0.99, gt=0.0, lt=1.0, description="Smoothing of the squared-gradient average.")
    eps: Eps = 1e-8
    momentum: float = Field(0.0, ge=0.0, lt=1.0, description="Momentum coefficient.")


class Adagrad(_OptimizerBase):
    """Adagrad: steps scaled by the accumulated squared gradients."""

    name: Literal["adagrad"] = "adagrad"
    learning_rate: LearningRate = 0.01
    eps: Eps = 1e-10


Optimizer = Annotated[
    SGD | Momentum | Nesterov | Adam | AdamW | RMSprop | Adagrad, Field(discriminator="name")
]
OPTIMIZER_NAMES = ("sgd", "momentum", "nesterov", "adam", "adamw", "rmsprop", "adagrad")


class NormClipping(SpecModel):
    """Rescale the gradient so that its global L2 norm (all parameters together) is at most max_norm."""

    max_norm: float = Field(gt=0.0, description="Largest allowed global gradient norm.", examples=[1.0])


class ValueClipping(SpecModel):
    """Clamp every gradient element to [-max_value, max_value]."""

    max_value: float = Field(gt=0.0, description="Largest allowed absolute gradient element.", examples=[0.5])


def _clipping_kind(value: Any) -> str:
    has = value.__contains__ if isinstance(value, dict) else lambda key: hasattr(value, key)
    return "value" if has("max_value") and not has("max_norm") else "norm"


Clipping = Annotated[
    Annotated[NormClipping, Tag("norm")] | Annotated[ValueClipping, Tag("value")],
    Discriminator(_clipping_kind),
]

# ---------------------------------------------------------------------------------- generalization


class Monitor(StrEnum):
    """Metric watched by early stopping."""

    val_loss = "val_loss"
    val_accuracy = "val_accuracy"
    val_rmse = "val_rmse"
    train_loss = "train_loss"


MAXIMIZED_METRICS = frozenset({"val_accuracy", "train_accuracy"})


class EarlyStopping(SpecModel):
    """Stop when the monitored metric has not improved by min_delta for patience epochs."""

    patience: int = Field(10, ge=1, le=MAX_EPOCHS, description="Epochs without improvement before stopping.")
    min_delta: float = Field(0.0, ge=0.0, description="Smallest change that counts as an improvement.")
    monitor: Monitor = Field(Monitor.val_loss, description="Metric watched (accuracy is maximized).")
    restore_best: bool = Field(True, description="End with the weights of the best epoch.")


class Generalization(SpecModel):
    """Early stopping, L2 regularization and dropout."""

    early_stopping: EarlyStopping | None = Field(
        None, description="Absent: train for all epochs.", examples=[{"patience": 10, "min_delta": 0.0}]
    )
    l2: float = Field(
        0.0,
        ge=0.0,
        le=10.0,
        description="λ in loss = data_loss + λ·Σ w² over weight matrices (not biases, not norm gains).",
        examples=[0.0001],
    )
    dropout: float = Field(
        0.0, ge=0.0, lt=1.0, description="Fraction of each hidden layer's units dropped while training."
    )


# ---------------------------------------------------------------------------------------- training


class Loss(StrEnum):
    """Performance function."""

    auto = "auto"
    cross_entropy = "cross_entropy"
    mse = "mse"


class Training(SpecModel):
    """Epochs, batches, seed and device."""

    epochs: int = Field(20, ge=1, le=MAX_EPOCHS, description="Maximum number of passes over the data.")
    batch_size: int = Field(32, ge=1, le=MAX_SAMPLES, description="Examples per gradient step.")
    seed: int = Field(0, ge=0, le=2**32 - 1, description="Seed for splits, initialization, batches, dropout.")
    device: str = Field(
        "auto",
        pattern=r"^(auto|cpu|cuda(:\d+)?)$",
        description="auto picks CUDA when available.",
        examples=["auto"],
    )
    loss: Loss = Field(Loss.auto, description="auto: cross-entropy for classification, MSE for regression.")
    diagnostics_every: int = Field(
        10, ge=0, description="Take per-layer diagnostics every N steps (0: never).", examples=[10]
    )
    checkpoint_every: int | None = Field(
        None,
        ge=1,
        description="Also keep a checkpoint every N epochs (last and best are always kept).",
        examples=[10],
    )


EXAMPLE_SPEC: dict[str, Any] = {
    "dataset": {"name": "iris", "validation_fraction": 0.2, "test_fraction": 0.2},
    "network": {"type": "mlp", "hidden_layers": [16]},
    "activation": "relu",
    "initialization": "xavier_uniform",
    "normalization": {"inputs": "zscore", "layers": "none"},
    "optimizer": {"name": "adam", "learning_rate": 0.01},
    "generalization": {"early_stopping": {"patience": 10}},
    "training": {"epochs": 30, "batch_size": 16, "seed": 0},
}


class JobSpec(SpecModel):
    """A training job: which network to train on which data, with which techniques."""

    dataset: DatasetSpec = Field(description="Data to train on: built-in, synthetic, file or upload.")
    network: MLPNetwork = Field(description="Network architecture.")
    activation: Activation = Field(
        Activation.relu,
        description="Hidden-layer transfer function; aliases logsig, tansig, poslin, purelin are accepted.",
    )
    initialization: Initialization = Field(
        InitName.xavier_uniform,
        description="Weight initialization: a name, or {scheme: normal, std} / {scheme: uniform, limit}.",
    )
    normalization: Normalization = Field(default_factory=Normalization, description="Normalization options.")
    optimizer: Optimizer = Field(default_factory=Adam, description="Optimizer and optional schedule.")
    clipping: Clipping | None = Field(
        None, description="Gradient clipping: {max_norm} or {max_value}.", examples=[{"max_norm": 1.0}]
    )
    generalization: Generalization = Field(
        default_factory=Generalization, description="Early stopping, L2 and dropout."
    )
    training: Training = Field(default_factory=Training, description="Epochs, batch size, seed, device.")

    @field_validator("activation", mode="before")
    @classmethod
    def _canonical_activation(cls, value: Any) -> Any:
        if not isinstance(value, str):
            return value
        value = ACTIVATION_ALIASES.get(value, value)
        if value not in set(Activation):
            allowed = ", ".join([*Activation, *ACTIVATION_ALIASES])
            raise ValueError(f"unknown activation '{value}'; allowed: {allowed}")
        return value

    @field_validator("initialization", mode="before")
    @classmethod
    def _known_initialization(cls, value: Any) -> Any:
        if isinstance(value, str) and value not in set(InitName):
            raise ValueError(
                f"unknown initialization '{value}'; allowed: {', '.join(InitName)}, "
                'or an object {"scheme": "normal", "std": x} / {"scheme": "uniform", "limit": x}'
            )
        return value


# ------------------------------------------------------------------------------------------- lint


class SpecWarning(BaseModel):
    """A legal but doubtful choice, with a stable code and advice a person can act on."""

    code: str
    message: str
    field: str


def lint(spec: JobSpec, *, feature_scale: float | None = None) -> list[SpecWarning]:
    """Warnings for legal but doubtful specs; feature_scale is the data's largest |x| when known."""
    warnings: list[SpecWarning] = []

    def warn(code: str, field: str, message: str) -> None:
        warnings.append(SpecWarning(code=code, field=field, message=message))

    layers = spec.normalization.layers
    depth = len(spec.network.hidden_layers)
    if spec.generalization.dropout > 0 and layers == LayerNormalization.batch:
        warn(
            "dropout_with_batch_norm",
            "generalization.dropout",
            "Dropout is not used together with batch normalization: drop one of them.",
        )
    if spec.initialization == InitName.zeros and depth > 0:
        warn(
            "zeros_initialization",
            "initialization",
            "Zero weights sit on a saddle point: every hidden unit of a layer stays identical. "
            "Use xavier_uniform (or he_normal for ReLU).",
        )
    if spec.activation in SIGMOID_TYPE and depth > 4 and layers == LayerNormalization.none:
        warn(
            "deep_sigmoid_without_normalization",
            "normalization.layers",
            f"{depth} {spec.activation} layers without normalization: gradients will vanish in the first "
            "layers. Add batch or layer normalization, or use relu.",
        )
    if spec.activation in SIGMOID_TYPE and spec.initialization in (InitName.he_normal, InitName.he_uniform):
        warn(
            "he_with_sigmoid",
            "initialization",
            f"He initialization is meant for ReLU; with {spec.activation} it pushes units into saturation. "
            "Use xavier_uniform.",
        )
    stopping = spec.generalization.early_stopping
    if stopping is not None and spec.dataset.validation_fraction == 0 and stopping.monitor != "train_loss":
        warn(
            "early_stopping_without_validation",
            "dataset.validation_fraction",
            "Early stopping needs a validation set: with validation_fraction 0 it watches the training "
            "loss instead, which does not detect over-fitting. Set validation_fraction to 0.2.",
        )
    if stopping is not None and stopping.patience >= spec.training.epochs:
        warn(
            "patience_exceeds_epochs",
            "generalization.early_stopping.patience",
            f"patience {stopping.patience} ≥ epochs {spec.training.epochs}: early stopping can never fire.",
        )
    if layers == LayerNormalization.batch and spec.training.batch_size < 2:
        warn(
            "batch_norm_small_batch",
            "training.batch_size",
            "Batch normalization over batches of one example has no statistics to use. "
            "Use batch_size ≥ 16, or layer normalization.",
        )
    if isinstance(spec.optimizer, AdamW) and spec.generalization.l2 > 0 and spec.optimizer.weight_decay > 0:
        warn(
            "l2_with_weight_decay",
            "generalization.l2",
            "Both an L2 penalty and AdamW's weight decay shrink the weights: use one of them.",
        )
    if feature_scale is None:
        info = DATASET_INFO.get(str(getattr(spec.dataset, "name", "")))
        feature_scale = info.feature_scale if info else None
    if spec.normalization.inputs == InputScaling.none and feature_scale is not None and feature_scale > 10:
        warn(
            "unscaled_inputs",
            "normalization.inputs",
            f"Input features reach {feature_scale:g} but are not normalized: sigmoid units saturate and "
            "steps are badly scaled. Use zscore or minmax.",
        )
    return warnings


def count_parameters(spec: JobSpec, *, features: int, outputs: int) -> int:
    """Trainable parameters of the network the spec builds, computed without torch."""
    widths = [features, *spec.network.hidden_layers, outputs]
    total = sum(w_in * w_out + w_out for w_in, w_out in itertools.pairwise(widths))
    if spec.normalization.layers != LayerNormalization.none:
        total += 2 * sum(spec.network.hidden_layers)  # gain and bias of each normalized unit
    return total


def dataset_shape(spec: JobSpec) -> DatasetInfo | None:
    """Features/outputs/task of a built-in or synthetic dataset; None for files and uploads."""
    return DATASET_INFO.get(str(getattr(spec.dataset, "name", "")))


# Segments pydantic adds to an error location for union members; a person thinks in field paths.
_UNION_TAGS = frozenset(
    {
        "builtin",
        "synthetic",
        "file",
        "upload",
        "norm",
        "value",
        "normal",
        "uniform",
        "step",
        "cosine",
        "plateau",
        *OPTIMIZER_NAMES,
    }
)


class FieldError(BaseModel):
    """One validation problem: the dotted field path and what is wrong."""

    field: str
    message: str


def describe_errors(errors: list[Any]) -> list[FieldError]:
    """Turn pydantic's error list into field paths and sentences, one per distinct problem."""
    seen: dict[str, FieldError] = {}
    for error in errors:
        parts = [
            str(part)
            for part in error.get("loc", ())
            if not (isinstance(part, str) and (part in _UNION_TAGS or "[" in part))
        ]
        field = ".".join(parts) or "spec"
        message = str(error.get("msg", "invalid value")).removeprefix("Value error, ")
        seen.setdefault(f"{field}: {message}", FieldError(field=field, message=message))
    return list(seen.values())
