"""Network architecture, activation, initialization and normalization."""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import (
    Discriminator,
    Field,
    Tag,
)

from training.spec.base import MAX_HIDDEN_LAYERS, MAX_LAYER_WIDTH, SpecModel


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


class RNNCell(StrEnum):
    """Recurrent cell type."""

    rnn = "rnn"
    lstm = "lstm"
    gru = "gru"


class RNNNetwork(SpecModel):
    """A recurrent network over sequences; the prediction is read from the last time step."""

    type: Literal["rnn"] = Field("rnn", description="Network type.")
    cell: RNNCell = Field(RNNCell.rnn, description="rnn (Elman; activation tanh or relu), lstm or gru.")
    hidden_size: int = Field(64, ge=1, le=4096, description="Units of the hidden state.", examples=[64])
    layers: int = Field(1, ge=1, le=8, description="Stacked recurrent layers.", examples=[1])
    bidirectional: bool = Field(False, description="Also run each layer backwards in time.")
    recurrent_initialization: Initialization | None = Field(
        None,
        description="Initialization of the recurrent (hidden-to-hidden) weights alone; "
        "absent: the same as `initialization`.",
        examples=["orthogonal", {"scheme": "normal", "std": 0.3}],
    )


class Pooling(StrEnum):
    """Down-sampling after each convolution block."""

    max = "max"
    avg = "avg"
    none = "none"


class CNNNetwork(SpecModel):
    """A convolutional network over images: conv blocks, then hidden linear layers, then the output."""

    type: Literal["cnn"] = Field("cnn", description="Network type.")
    channels: list[Annotated[int, Field(ge=1, le=1024)]] = Field(
        [16, 32], min_length=1, max_length=8, description="Output channels of each convolution block."
    )
    kernel_size: int = Field(3, ge=1, le=9, description="Square kernel size ('same' padding).", examples=[3])
    pool: Pooling = Field(Pooling.max, description="2x2 pooling after each convolution block.")
    hidden_layers: list[Annotated[int, Field(ge=1, le=MAX_LAYER_WIDTH)]] = Field(
        [64], max_length=MAX_HIDDEN_LAYERS, description="Linear layers after the convolutions."
    )


def _network_type(value: Any) -> str:
    """The network's `type`, mlp when absent (specs written before rnn and cnn existed stay valid)."""
    kind = value.get("type", "mlp") if isinstance(value, dict) else getattr(value, "type", "mlp")
    return str(kind)


NetworkSpec = Annotated[
    Annotated[MLPNetwork, Tag("mlp")] | Annotated[RNNNetwork, Tag("rnn")] | Annotated[CNNNetwork, Tag("cnn")],
    Discriminator(
        _network_type,
        custom_error_type="unknown_network",
        custom_error_message="network.type must be mlp, rnn or cnn",
    ),
]


class InputScaling(StrEnum):
    """Input normalization, fitted on the training split only."""

    none = "none"
    minmax = "minmax"
    zscore = "zscore"


class TargetScaling(StrEnum):
    """Regression target scaling, fitted on the training split (metrics and predictions: original units)."""

    none = "none"
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
    targets: TargetScaling = Field(
        TargetScaling.zscore,
        description="Regression only: zscore trains on (y - mean)/std of the training split; "
        "every metric and prediction is in the original units.",
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
