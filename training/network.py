"""JobSpec -> nn.Module: linear layers, per-layer normalization, activation, initialization, dropout."""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable

import torch
from torch import nn

from training.spec import (
    Activation,
    Initialization,
    InitName,
    JobSpec,
    LayerNormalization,
    NormalInit,
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
    fan_in = weight.shape[1]
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


def initialize_linear(layer: nn.Linear, init: Initialization) -> None:
    """Initialize one linear layer; biases start at zero except for PyTorch's default scheme."""
    match init:
        case NormalInit(std=std):
            nn.init.normal_(layer.weight, 0.0, std)
        case UniformInit(limit=limit):
            nn.init.uniform_(layer.weight, -limit, limit)
        case InitName.default:
            return
        case _:
            WEIGHT_INITS[InitName(init)](layer.weight)
    if layer.bias is not None:
        nn.init.zeros_(layer.bias)


class LayerInternals:
    """What one hidden layer computed on a batch: net input n (after normalization) and output a."""

    def __init__(self, net_input: torch.Tensor, output: torch.Tensor) -> None:
        self.net_input = net_input
        self.output = output


class MLP(nn.Module):
    """Hidden blocks (linear -> normalization -> activation -> dropout), then a linear output layer."""

    def __init__(self, spec: JobSpec, features: int, outputs: int) -> None:
        super().__init__()
        widths = [features, *spec.network.hidden_layers]
        norm = spec.normalization
        self.linears = nn.ModuleList(nn.Linear(w_in, w_out) for w_in, w_out in itertools.pairwise(widths))
        self.norms = nn.ModuleList(
            nn.BatchNorm1d(width, eps=norm.epsilon, momentum=norm.momentum)
            if norm.layers == LayerNormalization.batch
            else nn.LayerNorm(width, eps=norm.epsilon)
            if norm.layers == LayerNormalization.layer
            else nn.Identity()
            for width in spec.network.hidden_layers
        )
        self.activation = ACTIVATIONS[spec.activation]()
        self.dropout = nn.Dropout(spec.generalization.dropout) if spec.generalization.dropout > 0 else None
        self.output = nn.Linear(widths[-1], outputs)
        for layer in self.linear_layers():
            initialize_linear(layer, spec.initialization)

    def linear_layers(self) -> list[nn.Linear]:
        """Every linear layer, input side first (the layers diagnostics report on)."""
        return [*self.linears, self.output]

    def layer_names(self) -> list[str]:
        """Names of the linear layers in diagnostics: hidden1..hiddenN, output."""
        return [f"hidden{i + 1}" for i in range(len(self.linears))] + ["output"]

    def forward(self, x: torch.Tensor, internals: list[LayerInternals] | None = None) -> torch.Tensor:
        """Outputs (logits or values); when `internals` is given, each hidden layer's n and a are appended."""
        for linear, norm in zip(self.linears, self.norms, strict=False):
            net_input = norm(linear(x))
            x = self.activation(net_input)
            if internals is not None:
                internals.append(LayerInternals(net_input.detach(), x.detach()))
            if self.dropout is not None:
                x = self.dropout(x)
        return self.output(x)


def weight_matrices(model: nn.Module) -> list[torch.Tensor]:
    """The weights the L2 penalty covers: linear weight matrices only (not biases, not norm gains)."""
    return [module.weight for module in model.modules() if isinstance(module, nn.Linear)]


def build_network(spec: JobSpec, features: int, outputs: int) -> MLP:
    """The network a spec describes."""
    return MLP(spec, features, outputs)
