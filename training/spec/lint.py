"""Warnings for legal but doubtful specs, and parameter counts computed without torch."""

from __future__ import annotations

import itertools
import math

from pydantic import (
    BaseModel,
)

from training.spec.dataset import MNIST1DDatasetSpec, dataset_info
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
    RNNCell,
    RNNNetwork,
    RNNReadout,
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
    dataset = spec.dataset
    if isinstance(dataset, MNIST1DDatasetSpec) and not dataset.is_paper_set:
        warn(
            "mnist1d_not_paper_set",
            "dataset.samples" if dataset.samples != 5000 else "dataset.seed",
            f"MNIST-1D with samples {dataset.samples} and seed {dataset.seed} is a newly generated set, not "
            "the paper's (samples 5000, seed 42): its results do not compare with the paper's table.",
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


def count_parameters(spec: JobSpec, *, input_shape: tuple[int, ...], outputs: int) -> int:
    """Trainable parameters of the network the spec builds, computed without torch.

    input_shape: one example, (features,), (time steps, features) or (channels, height, width).
    ValueError when a cnn's convolutions shrink the input to nothing.
    """
    normalized = spec.normalization.layers != LayerNormalization.none
    network = spec.network
    match network:
        case RNNNetwork(cell=cell, hidden_size=size, layers=layers, bidirectional=bidirectional):
            directions = 2 if bidirectional else 1
            total, width = 0, input_shape[-1]
            for _ in range(layers):
                total += directions * RNN_GATES[cell] * (size * width + size * size + 2 * size)
                total += 2 * size * directions if normalized else 0
                width = size * directions
            if network.readout == RNNReadout.all_steps:
                width *= input_shape[0] if len(input_shape) == 2 else 1
            return total + width * outputs + outputs
        case CNNNetwork(channels=channels, hidden_layers=hidden):
            in_channels = input_shape[0] if len(input_shape) == 3 else input_shape[-1]
            area = 2 if len(input_shape) == 3 else 1  # a square kernel on images
            total = 0
            for out_channels, k in zip(channels, network.kernel_sizes(), strict=True):
                total += in_channels * out_channels * k**area + out_channels
                total += 2 * out_channels if normalized else 0
                in_channels = out_channels
            flat = math.prod(network.output_shape(input_shape))
            return total + _linear_stack([flat, *hidden, outputs], normalized)
        case MLPNetwork(hidden_layers=hidden):
            return _linear_stack([math.prod(input_shape), *hidden, outputs], normalized)
    raise ValueError(f"unknown network {network!r}")
