"""Warnings for legal but doubtful specs, and parameter counts computed without torch."""

from __future__ import annotations

import itertools

from pydantic import (
    BaseModel,
)

from training.spec.dataset import dataset_info
from training.spec.job import JobSpec
from training.spec.network import (
    SIGMOID_TYPE,
    Activation,
    CNNNetwork,
    InitName,
    InputScaling,
    LayerNormalization,
    MLPNetwork,
    NetworkSpec,
    Pooling,
    RNNCell,
    RNNNetwork,
)
from training.spec.optimizer import AdamW


class SpecWarning(BaseModel):
    """A legal but doubtful choice, with a stable code and advice a person can act on."""

    code: str
    message: str
    field: str


def network_depth(network: NetworkSpec) -> int:
    """Hidden layers between input and output (stacked layers for an rnn)."""
    match network:
        case RNNNetwork(layers=layers):
            return layers
        case CNNNetwork(channels=channels, hidden_layers=hidden):
            return len(channels) + len(hidden)
        case MLPNetwork(hidden_layers=hidden):
            return len(hidden)
    return 0


def lint(
    spec: JobSpec,
    *,
    feature_scale: float | None = None,
    sequence_length: int | None = None,
    unstratified_classes: list[str] | None = None,
) -> list[SpecWarning]:
    """Warnings for legal but doubtful specs; the keyword facts come from the loaded data when known."""
    warnings: list[SpecWarning] = []

    def warn(code: str, field: str, message: str) -> None:
        warnings.append(SpecWarning(code=code, field=field, message=message))

    layers = spec.normalization.layers
    depth = network_depth(spec.network)
    network = spec.network
    sequence_length = sequence_length or getattr(spec.dataset, "length", None)
    if isinstance(network, RNNNetwork):
        if spec.clipping is None and sequence_length is not None and sequence_length > 50:
            warn(
                "rnn_long_sequence_without_clipping",
                "clipping",
                f"A recurrent net over {sequence_length} time steps without gradient clipping: gradients "
                'can explode. Add "clipping": {"max_norm": 1.0}.',
            )
        if network.cell == RNNCell.rnn and spec.activation == Activation.relu and spec.clipping is None:
            warn(
                "relu_rnn_without_clipping",
                "clipping",
                "A relu rnn cell is unbounded: its hidden state and gradients can explode over time. "
                'Add "clipping": {"max_norm": 1.0}, or use tanh.',
            )
        if network.cell != RNNCell.rnn and spec.activation not in (Activation.relu, Activation.tanh):
            warn(
                "activation_ignored_by_cell",
                "activation",
                f"{network.cell} cells have their own gate activations; {spec.activation} is not used.",
            )
    if spec.generalization.dropout > 0 and layers == LayerNormalization.batch:
        warn(
            "dropout_with_batch_norm",
            "generalization.dropout",
            "Dropout is not used together with batch normalization: drop one of them.",
        )
    if spec.initialization == InitName.zeros and depth > 0:
        warn("zeros_initialization", "initialization", _zeros_message(spec))
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
        info = dataset_info(spec.dataset)
        feature_scale = info.feature_scale if info else None
    if spec.normalization.inputs == InputScaling.none and feature_scale is not None and feature_scale > 10:
        warn(
            "unscaled_inputs",
            "normalization.inputs",
            f"Input features reach {feature_scale:g} but are not normalized: sigmoid units saturate and "
            "steps are badly scaled. Use zscore or minmax.",
        )
    if unstratified_classes:
        warn(
            "unstratified_split",
            "dataset",
            f"Classes {', '.join(unstratified_classes)} have too few examples to be spread over the splits "
            "in proportion: a class with one example stays in the training split, and with fewer held-out "
            "rows than classes no split is stratified. Validation and test metrics say little about them.",
        )
    return warnings


def _zeros_message(spec: JobSpec) -> str:
    """What zero weights do to this network (the activation and dropout decide)."""
    advice = " Use xavier_uniform (or he_normal for ReLU)."
    gated = isinstance(spec.network, RNNNetwork) and spec.network.cell != RNNCell.rnn  # own activations
    if spec.activation == Activation.relu and not gated:
        return (
            "Zero weights with relu: every hidden unit outputs 0 and relu'(0) = 0, so no gradient reaches "
            "the hidden layers and they never learn (dropout cannot change that)." + advice
        )
    if spec.generalization.dropout > 0:
        return (
            "Zero weights sit on a saddle point: the hidden units of a layer start identical and only "
            "dropout's random masks make them differ, slowly (without dropout they would stay identical)."
            + advice
        )
    return (
        "Zero weights sit on a saddle point: the hidden units of a layer start identical and get identical "
        "updates, so they stay identical and each layer acts as a single unit." + advice
    )


RNN_GATES = {RNNCell.rnn: 1, RNNCell.lstm: 4, RNNCell.gru: 3}


def _linear_stack(widths: list[int], normalized: bool) -> int:
    total = sum(w_in * w_out + w_out for w_in, w_out in itertools.pairwise(widths))
    return total + (2 * sum(widths[1:-1]) if normalized else 0)  # gain and bias per normalized unit


def count_parameters(
    spec: JobSpec, *, features: int, outputs: int, image_shape: tuple[int, int, int] | None = None
) -> int:
    """Trainable parameters of the network the spec builds, computed without torch.

    features: inputs per example (per time step for sequences); image_shape (C, H, W) for a cnn.
    """
    normalized = spec.normalization.layers != LayerNormalization.none
    network = spec.network
    match network:
        case RNNNetwork(cell=cell, hidden_size=size, layers=layers, bidirectional=bidirectional):
            directions = 2 if bidirectional else 1
            total, width = 0, features
            for _ in range(layers):
                total += directions * RNN_GATES[cell] * (size * width + size * size + 2 * size)
                total += 2 * size * directions if normalized else 0
                width = size * directions
            return total + width * outputs + outputs
        case CNNNetwork(channels=channels, kernel_size=k, pool=pool, hidden_layers=hidden):
            in_channels, height, width = image_shape or (1, features, 1)
            total = 0
            for out_channels in channels:
                total += (
                    in_channels * out_channels * k * k
                    + out_channels
                    + (2 * out_channels if normalized else 0)
                )
                in_channels = out_channels
                if pool != Pooling.none:
                    height, width = height // 2, width // 2
            return total + _linear_stack([in_channels * height * width, *hidden, outputs], normalized)
        case MLPNetwork(hidden_layers=hidden):
            return _linear_stack([features, *hidden, outputs], normalized)
    raise ValueError(f"unknown network {network!r}")
