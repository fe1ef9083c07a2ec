"""JobSpec: the whole job, with generalization and training options."""

from __future__ import annotations

from enum import StrEnum
from typing import Any, Literal

from pydantic import (
    Field,
    field_validator,
    model_validator,
)

from training.spec.base import MAX_EPOCHS, MAX_SAMPLES, SpecModel
from training.spec.dataset import BuiltinDataset, BuiltinDatasetSpec, DataKind, DatasetSpec, data_kind
from training.spec.network import (
    ACTIVATION_ALIASES,
    Activation,
    CNNNetwork,
    Initialization,
    InitName,
    LayerNormalization,
    NetworkSpec,
    Normalization,
    RNNCell,
    RNNNetwork,
)
from training.spec.optimizer import Adam, Clipping, Optimizer, named_optimizer


class Monitor(StrEnum):
    """Metric watched by early stopping."""

    val_loss = "val_loss"
    val_accuracy = "val_accuracy"
    val_rmse = "val_rmse"
    train_loss = "train_loss"


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


class JobSpec(SpecModel):
    """A training job: which network to train on which data, with which techniques."""

    dataset: DatasetSpec = Field(description="Data to train on: built-in, synthetic, file or upload.")
    network: NetworkSpec = Field(description="Network architecture: mlp (default), rnn or cnn.")
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

    @field_validator("optimizer", mode="before")
    @classmethod
    def _adam_by_default(cls, value: Any) -> Any:
        return named_optimizer(value)

    @field_validator("network", mode="before")
    @classmethod
    def _known_recurrent_initialization(cls, value: Any) -> Any:
        init = value.get("recurrent_initialization") if isinstance(value, dict) else None
        if isinstance(init, str) and init not in set(InitName):
            raise ValueError(f"unknown recurrent_initialization '{init}'; allowed: {', '.join(InitName)}")
        return value

    @model_validator(mode="after")
    def _network_fits_options(self) -> JobSpec:
        network, kind = self.network, data_kind(self.dataset)
        if kind is not None and (misfit := network_misfit(network, kind, self.dataset)):
            raise ValueError(misfit)
        if isinstance(network, RNNNetwork):
            if self.normalization.layers == LayerNormalization.batch:
                raise ValueError(
                    "normalization.layers 'batch' is not defined for a recurrent network: its statistics "
                    "would mix time steps and sequences. Use 'layer', which normalizes each hidden state"
                )
            if network.cell == RNNCell.rnn and self.activation not in (Activation.tanh, Activation.relu):
                raise ValueError(
                    f"a plain rnn cell computes tanh or relu, not {self.activation}; "
                    "set activation to tanh or relu, or use cell lstm or gru"
                )
        return self


def final_checkpoint(spec: JobSpec) -> Literal["best", "last"]:
    """The checkpoint holding the weights a run of this spec ends with, the ones its test metrics measure."""
    stopping = spec.generalization.early_stopping
    return "best" if stopping is not None and stopping.restore_best else "last"


def network_misfit(network: NetworkSpec, kind: DataKind, dataset: DatasetSpec | None = None) -> str | None:
    """Why this network cannot read data of this kind (a sentence a person can act on); None if it can."""
    if isinstance(network, RNNNetwork) and kind != "sequence":
        return (
            "network type rnn needs sequences: a sequence dataset (adding, parity, sine_sequence, or an "
            f".npz whose X has shape (N, T, F)); this dataset is a {kind} dataset"
        )
    if isinstance(network, CNNNetwork) and kind != "image":
        digits = isinstance(dataset, BuiltinDatasetSpec) and dataset.name == BuiltinDataset.digits
        hint = " (set dataset.as_images: true)" if digits else ""
        return f"network type cnn needs images: an image dataset{hint}; this dataset is a {kind} dataset"
    return None
