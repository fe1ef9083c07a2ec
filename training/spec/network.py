"""Network architecture, activation, initialization and normalization."""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import (
    Discriminator,
    Field,
    Tag,
    model_validator,
)

from training.spec.base import MAX_HIDDEN_LAYERS, MAX_LAYER_WIDTH, SpecModel


class MLPNetwork(SpecModel):
    """A multilayer perceptron: linear layers, each hidden one followed by normalization and activation."""

    type: Literal["mlp"] = Field("mlp", description="Network type.")
    hidden_layers: list[Annotated[int, Field(strict=True, ge=1, le=MAX_LAYER_WIDTH)]] = Field(
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


class RNNReadout(StrEnum):
    """What the output layer reads from the recurrent layers' outputs."""

    last = "last"  # the last time step (both ends when bidirectional)
    all_steps = "all_steps"  # every step's output, flattened
    mean = "mean"  # the average over time steps


class RNNNetwork(SpecModel):
    """A recurrent network over sequences; the output layer reads the last step, all steps or their mean."""

    type: Literal["rnn"] = Field("rnn", description="Network type.")
    cell: RNNCell = Field(RNNCell.rnn, description="rnn (Elman; activation tanh or relu), lstm or gru.")
    hidden_size: int = Field(
        64, ge=1, le=4096, description="Units of the hidden state.", examples=[64], strict=True
    )
    layers: int = Field(1, ge=1, le=8, description="Stacked recurrent layers.", examples=[1], strict=True)
    bidirectional: bool = Field(False, description="Also run each layer backwards in time.")
    readout: RNNReadout = Field(
        RNNReadout.last,
        description="last: the last time step's output; all_steps: every step's output flattened into the "
        "output layer (MNIST-1D's GRU); mean: the average over time.",
    )
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


KernelSize = Annotated[int, Field(strict=True, ge=1, le=31)]
Stride = Annotated[int, Field(strict=True, ge=1, le=8)]


class CNNNetwork(SpecModel):
    """Convolution blocks (2-D on images, 1-D on sequences), then hidden linear layers, then the output."""

    type: Literal["cnn"] = Field("cnn", description="Network type.")
    channels: list[Annotated[int, Field(strict=True, ge=1, le=1024)]] = Field(
        [16, 32], min_length=1, max_length=8, description="Output channels of each convolution block."
    )
    kernel_size: KernelSize | list[KernelSize] = Field(
        3,
        description="Kernel size (square on images): one for every convolution, or one per convolution.",
        examples=[3, [5, 3, 3]],
    )
    stride: Stride | list[Stride] = Field(
        1, description="Stride: one for every convolution, or one per convolution.", examples=[1, [2, 2, 2]]
    )
    padding: Annotated[int, Field(strict=True, ge=0, le=15)] | Literal["same"] = Field(
        "same",
        description='Zeros added on each side: a number, or "same" (output as long as the input; stride 1).',
        examples=["same", 1],
    )
    pool: Pooling = Field(Pooling.max, description="Pooling by 2 after each convolution block, or none.")
    hidden_layers: list[Annotated[int, Field(strict=True, ge=1, le=MAX_LAYER_WIDTH)]] = Field(
        [64], max_length=MAX_HIDDEN_LAYERS, description="Linear layers after the convolutions."
    )

    @model_validator(mode="after")
    def _one_value_per_convolution(self) -> CNNNetwork:
        for name in ("kernel_size", "stride"):
            value = getattr(self, name)
            if isinstance(value, list) and len(value) != len(self.channels):
                raise ValueError(
                    f"{name} lists {len(value)} values for {len(self.channels)} convolutions (channels): "
                    "give one value, or one per convolution"
                )
        if self.padding == "same" and any(stride > 1 for stride in self.strides()):
            raise ValueError('padding "same" needs stride 1; give padding as a number of zeros instead')
        return self

    def kernel_sizes(self) -> list[int]:
        """The kernel size of each convolution."""
        k = self.kernel_size
        return list(k) if isinstance(k, list) else [k] * len(self.channels)

    def strides(self) -> list[int]:
        """The stride of each convolution."""
        s = self.stride
        return list(s) if isinstance(s, list) else [s] * len(self.channels)

    def output_shape(self, input_shape: tuple[int, ...]) -> tuple[int, ...]:
        """(channels, *spatial) after the convolution blocks, for one example of `input_shape`.

        Images (C, H, W) get 2-D convolutions, sequences (T, F) 1-D ones over T with F channels.
        ValueError when a size drops below 1.
        """
        if len(input_shape) not in (2, 3):
            raise ValueError(
                f"a cnn reads images (C, H, W) or sequences (T, F), not shape {list(input_shape)}"
            )
        channels, spatial = input_shape[-1], [input_shape[0]]
        if len(input_shape) == 3:
            channels, spatial = input_shape[0], list(input_shape[1:])
        for i, (out, k, stride) in enumerate(
            zip(self.channels, self.kernel_sizes(), self.strides(), strict=True)
        ):
            if self.padding != "same":  # "same" keeps every size (it needs stride 1)
                spatial = [(n + 2 * self.padding - k) // stride + 1 for n in spatial]
            if self.pool != Pooling.none:
                spatial = [n // 2 for n in spatial]
            if min(spatial) < 1:
                raise ValueError(
                    f"convolution {i + 1} of the cnn leaves nothing of an input of shape "
                    f"{list(input_shape)}; "
                    "use fewer convolutions, smaller kernels or strides, more padding, or pool none"
                )
            channels = out
        return (channels, *spatial)


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
