"""JobSpec -> nn.Module: mlp, rnn or cnn, with activation, initialization, normalization and dropout.

Every network exposes `weight_groups()` (the named weights that diagnostics report on, input side
first) and fills an optional `internals` dict with what each hidden layer computed.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from training.spec import (
    RELU_TYPE,
    SIGMOID_TYPE,
    Activation,
    CNNNetwork,
    Initialization,
    InitName,
    JobSpec,
    LayerNormalization,
    MLPNetwork,
    NormalInit,
    Normalization,
    Pooling,
    RNNCell,
    RNNNetwork,
    RNNReadout,
    UniformInit,
)

ACTIVATIONS: dict[Activation, Callable[[], nn.Module]] = {
    Activation.sigmoid: nn.Sigmoid,
    Activation.tanh: nn.Tanh,
    Activation.relu: nn.ReLU,
    Activation.leaky_relu: lambda: nn.LeakyReLU(0.01),
    Activation.elu: nn.ELU,
    Activation.gelu: nn.GELU,
    Activation.linear: nn.Identity,
}


def _lecun_normal(weight: torch.Tensor) -> None:
    fan_in, _ = nn.init._calculate_fan_in_and_fan_out(weight)
    nn.init.normal_(weight, 0.0, math.sqrt(1.0 / fan_in))  # σ² = 1/S^(m-1): keeps forward variance


WEIGHT_INITS: dict[InitName, Callable[[torch.Tensor], object]] = {
    InitName.xavier_uniform: nn.init.xavier_uniform_,  # σ² = 2/(S^(m-1) + S^m)
    InitName.xavier_normal: nn.init.xavier_normal_,
    InitName.lecun_normal: _lecun_normal,
    InitName.he_normal: lambda w: nn.init.kaiming_normal_(w, nonlinearity="relu"),  # σ² = 2/S^(m-1)
    InitName.he_uniform: lambda w: nn.init.kaiming_uniform_(w, nonlinearity="relu"),
    InitName.orthogonal: nn.init.orthogonal_,
    InitName.zeros: nn.init.zeros_,
    InitName.default: lambda w: None,  # keep PyTorch's own initialization
}


def initialize_weight(weight: torch.Tensor, init: Initialization) -> None:
    """Initialize one weight tensor in place by a scheme name or a {normal, uniform} object."""
    with torch.no_grad():
        match init:
            case NormalInit(std=std):
                nn.init.normal_(weight, 0.0, std)
            case UniformInit(limit=limit):
                nn.init.uniform_(weight, -limit, limit)
            case _:
                WEIGHT_INITS[InitName(init)](weight)


def initialize_linear(layer: nn.Linear | nn.Conv1d | nn.Conv2d, init: Initialization) -> None:
    """Initialize a layer; biases start at zero except for PyTorch's default scheme."""
    if init == InitName.default:
        return
    initialize_weight(layer.weight, init)
    if layer.bias is not None:
        nn.init.zeros_(layer.bias)


@dataclass
class LayerInternals:
    """What one hidden layer computed on a batch: net input n (None where not exposed) and output a."""

    net_input: torch.Tensor | None
    output: torch.Tensor
    unit_dim: int = 1  # the axis of units (channels for a cnn); the other axes are examples, time, space


Internals = dict[str, LayerInternals]
WeightGroups = list[tuple[str, list[torch.Tensor]]]


def _norm_1d(norm: Normalization, width: int) -> nn.Module:
    if norm.layers == LayerNormalization.batch:
        return nn.BatchNorm1d(width, eps=norm.epsilon, momentum=norm.momentum)
    if norm.layers == LayerNormalization.layer:
        return nn.LayerNorm(width, eps=norm.epsilon)
    return nn.Identity()


class HiddenStack(nn.Module):
    """Linear -> normalization -> activation -> dropout blocks (the hidden part of an mlp or cnn head)."""

    def __init__(self, spec: JobSpec, widths: list[int], prefix: str = "hidden") -> None:
        super().__init__()
        self.prefix = prefix
        self.linears = nn.ModuleList(nn.Linear(w_in, w_out) for w_in, w_out in itertools.pairwise(widths))
        self.norms = nn.ModuleList(_norm_1d(spec.normalization, width) for width in widths[1:])
        self.activation = ACTIVATIONS[spec.activation]()
        self.dropout = nn.Dropout(spec.generalization.dropout) if spec.generalization.dropout > 0 else None

    def names(self) -> list[str]:
        """hidden1..hiddenN."""
        return [f"{self.prefix}{i + 1}" for i in range(len(self.linears))]

    def forward(self, x: torch.Tensor, internals: Internals | None = None) -> torch.Tensor:
        """Apply every block, recording n and a when asked."""
        for name, linear, norm in zip(self.names(), self.linears, self.norms, strict=True):
            net_input = norm(linear(x))
            x = self.activation(net_input)
            if internals is not None:
                internals[name] = LayerInternals(net_input.detach(), x.detach())
            if self.dropout is not None:
                x = self.dropout(x)
        return x


class MLP(nn.Module):
    """Hidden blocks (linear -> normalization -> activation -> dropout), then a linear output layer."""

    def __init__(self, spec: JobSpec, network: MLPNetwork, features: int, outputs: int) -> None:
        super().__init__()
        self.hidden = HiddenStack(spec, [features, *network.hidden_layers])
        self.output = nn.Linear(([features, *network.hidden_layers])[-1], outputs)
        for layer in self.linear_layers():
            initialize_linear(layer, spec.initialization)

    @property
    def linears(self) -> nn.ModuleList:
        """The hidden linear layers."""
        return self.hidden.linears

    @property
    def norms(self) -> nn.ModuleList:
        """The per-layer normalizations of the hidden layers."""
        return self.hidden.norms

    @property
    def dropout(self) -> nn.Dropout | None:
        """Dropout after each hidden layer, if any."""
        return self.hidden.dropout

    def linear_layers(self) -> list[nn.Linear]:
        """Every linear layer, input side first."""
        return [*self.hidden.linears, self.output]

    def layer_names(self) -> list[str]:
        """Names of the linear layers in diagnostics: hidden1..hiddenN, output."""
        return [*self.hidden.names(), "output"]

    def weight_groups(self) -> WeightGroups:
        """One group per linear layer."""
        return [
            (name, [layer.weight])
            for name, layer in zip(self.layer_names(), self.linear_layers(), strict=False)
        ]

    def forward(self, x: torch.Tensor, internals: Internals | None = None) -> torch.Tensor:
        """Outputs (logits or values); sequences are flattened into one feature vector."""
        return self.output(self.hidden(x.flatten(1), internals))


CONV = {1: nn.Conv1d, 2: nn.Conv2d}
BATCH_NORM = {1: nn.BatchNorm1d, 2: nn.BatchNorm2d}
POOLS: dict[Pooling, dict[int, Callable[[], nn.Module]]] = {
    Pooling.max: {1: lambda: nn.MaxPool1d(2), 2: lambda: nn.MaxPool2d(2)},
    Pooling.avg: {1: lambda: nn.AvgPool1d(2), 2: lambda: nn.AvgPool2d(2)},
    Pooling.none: {1: nn.Identity, 2: nn.Identity},
}


class CNN(nn.Module):
    """Convolution blocks (conv -> normalization -> activation -> pool -> dropout), then an mlp head.

    Images (C, H, W) get 2-D convolutions; sequences (T, F) 1-D ones over time with F input channels.
    """

    def __init__(
        self, spec: JobSpec, network: CNNNetwork, input_shape: tuple[int, ...], outputs: int
    ) -> None:
        super().__init__()
        norm = spec.normalization
        self.input_shape = input_shape
        dims = 2 if len(input_shape) == 3 else 1
        channels = input_shape[0] if dims == 2 else input_shape[-1]
        padding = network.padding
        self.convs = nn.ModuleList()
        self.norms = nn.ModuleList()
        for out_channels, kernel, stride in zip(
            network.channels, network.kernel_sizes(), network.strides(), strict=True
        ):
            self.convs.append(CONV[dims](channels, out_channels, kernel, stride=stride, padding=padding))
            if norm.layers == LayerNormalization.batch:
                self.norms.append(BATCH_NORM[dims](out_channels, eps=norm.epsilon, momentum=norm.momentum))
            elif norm.layers == LayerNormalization.layer:  # over each example's channels and positions
                self.norms.append(nn.GroupNorm(1, out_channels, eps=norm.epsilon))
            else:
                self.norms.append(nn.Identity())
            channels = out_channels
        self.pool = POOLS[network.pool][dims]()
        self.activation = ACTIVATIONS[spec.activation]()
        self.dropout = nn.Dropout(spec.generalization.dropout) if spec.generalization.dropout > 0 else None
        flat = math.prod(network.output_shape(input_shape))  # also refuses other shapes
        self.hidden = HiddenStack(spec, [flat, *network.hidden_layers])
        self.output = nn.Linear(([flat, *network.hidden_layers])[-1], outputs)
        for layer in [*self.convs, *self.hidden.linears, self.output]:
            initialize_linear(layer, spec.initialization)

    def weight_groups(self) -> WeightGroups:
        """conv1..convK, hidden1..hiddenN, output."""
        layers = [*self.convs, *self.hidden.linears, self.output]
        names = [f"conv{i + 1}" for i in range(len(self.convs))] + [*self.hidden.names(), "output"]
        return [(name, [layer.weight]) for name, layer in zip(names, layers, strict=True)]

    def forward(self, x: torch.Tensor, internals: Internals | None = None) -> torch.Tensor:
        """Images (N, C, H, W) or sequences (N, T, F) -> outputs."""
        if len(self.input_shape) == 2:
            x = x.transpose(1, 2)  # (N, T, F) -> (N, F, T): features are the input channels
        for i, (conv, norm) in enumerate(zip(self.convs, self.norms, strict=True)):
            net_input = norm(conv(x))
            x = self.activation(net_input)
            if internals is not None:
                internals[f"conv{i + 1}"] = LayerInternals(net_input.detach(), x.detach())
            x = self.pool(x)
            if self.dropout is not None:
                x = self.dropout(x)
        return self.output(self.hidden(x.flatten(1), internals))


RECURRENT_MODULES = {RNNCell.rnn: nn.RNN, RNNCell.lstm: nn.LSTM, RNNCell.gru: nn.GRU}
RECURRENT_CELLS = {RNNCell.rnn: nn.RNNCell, RNNCell.lstm: nn.LSTMCell, RNNCell.gru: nn.GRUCell}


class LayerNormRecurrent(nn.Module):
    """One recurrent layer stepped in Python so that the hidden state is layer-normalized at every step.

    PyTorch's fused RNN kernels have no layer norm; this is the chapter's normalization for recurrent nets.
    """

    def __init__(
        self, cell: RNNCell, inputs: int, size: int, bidirectional: bool, nonlinearity: str, eps: float
    ):
        super().__init__()
        kwargs = {"nonlinearity": nonlinearity} if cell == RNNCell.rnn else {}
        directions = 2 if bidirectional else 1
        self.cells = nn.ModuleList(RECURRENT_CELLS[cell](inputs, size, **kwargs) for _ in range(directions))
        self.norms = nn.ModuleList(nn.LayerNorm(size, eps=eps) for _ in range(directions))
        self.is_lstm = cell == RNNCell.lstm

    def _run(self, cell: nn.Module, norm: nn.Module, x: torch.Tensor, reverse: bool) -> torch.Tensor:
        steps = range(x.shape[1] - 1, -1, -1) if reverse else range(x.shape[1])
        state: torch.Tensor | tuple[torch.Tensor, torch.Tensor] | None = None
        outputs: list[torch.Tensor] = [x] * x.shape[1]
        for t in steps:
            state = cell(x[:, t], state)
            if self.is_lstm:
                assert isinstance(state, tuple)
                state = (norm(state[0]), state[1])
                outputs[t] = state[0]
            else:
                state = norm(state)
                outputs[t] = state  # type: ignore[assignment]
        return torch.stack(outputs, dim=1)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, None]:
        """(N, T, F) -> (N, T, H * directions), like nn.RNN with batch_first."""
        runs = [
            self._run(c, n, x, reverse=i == 1)
            for i, (c, n) in enumerate(zip(self.cells, self.norms, strict=False))
        ]
        return torch.cat(runs, dim=2), None


class RNN(nn.Module):
    """Stacked recurrent layers over (N, T, F) sequences, read at the last step, every step or the mean."""

    def __init__(
        self, spec: JobSpec, network: RNNNetwork, input_shape: tuple[int, ...], outputs: int
    ) -> None:
        super().__init__()
        features = input_shape[-1]
        self.size, self.bidirectional = network.hidden_size, network.bidirectional
        self.readout = network.readout
        directions = 2 if network.bidirectional else 1
        nonlinearity = "relu" if spec.activation == Activation.relu else "tanh"
        layer_norm = spec.normalization.layers == LayerNormalization.layer
        self.recurrent = nn.ModuleList()
        width = features
        for _ in range(network.layers):
            if layer_norm:
                layer: nn.Module = LayerNormRecurrent(
                    network.cell,
                    width,
                    self.size,
                    self.bidirectional,
                    nonlinearity,
                    spec.normalization.epsilon,
                )
            else:
                kwargs = {"nonlinearity": nonlinearity} if network.cell == RNNCell.rnn else {}
                module = RECURRENT_MODULES[network.cell]
                layer = module(width, self.size, batch_first=True, bidirectional=self.bidirectional, **kwargs)
            self.recurrent.append(layer)
            width = self.size * directions
        self.dropout = nn.Dropout(spec.generalization.dropout) if spec.generalization.dropout > 0 else None
        if self.readout == RNNReadout.all_steps:
            width *= input_shape[0] if len(input_shape) == 2 else 1
        self.output = nn.Linear(width, outputs)
        recurrent_init = network.recurrent_initialization or spec.initialization
        if spec.initialization != InitName.default:
            for name, parameter in self.recurrent.named_parameters():
                if "weight_hh" in name:
                    initialize_weight(parameter, recurrent_init)
                elif "weight_ih" in name:
                    initialize_weight(parameter, spec.initialization)
                elif "bias" in name:
                    nn.init.zeros_(parameter)
        elif network.recurrent_initialization is not None:
            for name, parameter in self.recurrent.named_parameters():
                if "weight_hh" in name:
                    initialize_weight(parameter, recurrent_init)
        initialize_linear(self.output, spec.initialization)

    def weight_groups(self) -> WeightGroups:
        """rnnK.input and rnnK.recurrent per layer (both directions together), then output."""
        groups: WeightGroups = []
        for i, layer in enumerate(self.recurrent):
            named = list(layer.named_parameters())
            groups.append((f"rnn{i + 1}.input", [p for n, p in named if "weight_ih" in n]))
            groups.append((f"rnn{i + 1}.recurrent", [p for n, p in named if "weight_hh" in n]))
        return [*groups, ("output", [self.output.weight])]

    def forward(self, x: torch.Tensor, internals: Internals | None = None) -> torch.Tensor:
        """Sequences (N, T, F) -> outputs from the read-out of the last layer's outputs."""
        for i, layer in enumerate(self.recurrent):
            if i > 0 and self.dropout is not None:
                x = self.dropout(x)  # between stacked layers only
            x, _ = layer(x)
            if internals is not None:
                internals[f"rnn{i + 1}.recurrent"] = LayerInternals(None, x.detach(), unit_dim=2)
        match self.readout:
            case RNNReadout.all_steps:
                return self.output(x.flatten(1))
            case RNNReadout.mean:
                return self.output(x.mean(dim=1))
        if self.bidirectional:  # forward direction ends at T-1, backward direction at 0
            last = torch.cat([x[:, -1, : self.size], x[:, 0, self.size :]], dim=1)
        else:
            last = x[:, -1]
        return self.output(last)


def _rnn_exposes_activation(network: RNNNetwork, spec: JobSpec) -> bool:
    """A plain fused rnn records a = tanh(n) or relu(n); lstm/gru gates and layer-normalized states do not."""
    return network.cell == RNNCell.rnn and spec.normalization.layers != LayerNormalization.layer


def saturation_source(spec: JobSpec) -> str | None:
    """How saturation is measured: from the net input, from the output (fused rnn), or not at all."""
    if spec.activation not in SIGMOID_TYPE:
        return None
    if isinstance(spec.network, RNNNetwork):
        return "output" if _rnn_exposes_activation(spec.network, spec) else None
    return "net_input"


def tracks_dead_units(spec: JobSpec) -> bool:
    """Dead units exist for ReLU-family activations (and not inside lstm/gru cells)."""
    if isinstance(spec.network, RNNNetwork) and not _rnn_exposes_activation(spec.network, spec):
        return False
    return spec.activation in RELU_TYPE


Network = MLP | CNN | RNN


def build_network(spec: JobSpec, input_shape: int | tuple[int, ...], outputs: int) -> Network:
    """The network a spec describes, for examples of `input_shape`: (F,), (T, F) or (C, H, W)."""
    shape = (input_shape,) if isinstance(input_shape, int) else tuple(input_shape)
    match spec.network:
        case RNNNetwork():
            return RNN(spec, spec.network, shape, outputs)
        case CNNNetwork():
            return CNN(spec, spec.network, shape, outputs)
        case MLPNetwork():
            return MLP(spec, spec.network, math.prod(shape), outputs)
    raise ValueError(f"unknown network {spec.network!r}")


def weight_matrices(model: nn.Module) -> list[torch.Tensor]:
    """The weights the L2 penalty covers: linear, conv and recurrent weight matrices (no biases or gains)."""
    weights: list[torch.Tensor] = []
    for module in model.modules():
        if isinstance(module, nn.Linear | nn.Conv1d | nn.Conv2d):
            weights.append(module.weight)
        elif isinstance(module, nn.RNNBase | nn.RNNCellBase):
            weights.extend(p for n, p in module.named_parameters(recurse=False) if n.startswith("weight_"))
    return weights
