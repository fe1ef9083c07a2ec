"""R networks of one architecture run as one: parameters stacked along a leading replica axis.

Each replica's own module (built and initialized exactly as a job run alone builds it) keeps its
parameters; a forward pass stacks them, so autograd hands every replica's module its own gradients
and the single-job optimizer, clipping, diagnostics and checkpoints apply to it unchanged.
Linear layers are batched matrix products (baddbmm), convolutions one grouped convolution.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

from training.network import CNN, MLP, HiddenStack, Internals, LayerInternals, Network


def share(params: Sequence[nn.Parameter]) -> torch.Tensor:
    """One leaf (R, ...) that holds the replicas' parameters, with a gradient that holds theirs.

    Each replica's parameter and its gradient become views of row r (as FSDP's flat parameters do), so a
    forward pass on the leaf needs no stacking, backward no unstacking, and the replica's optimizer,
    clipping, diagnostics and checkpoints read and write its own row in place.
    """
    stacked = torch.stack([p.detach() for p in params]).requires_grad_(True)
    grad = stacked.grad = torch.zeros_like(stacked)
    for row, param in enumerate(params):
        param.data = stacked.detach()[row]
        param.grad = grad[row]
    return stacked


def _is_batch_norm(norm: nn.Module) -> bool:
    return isinstance(norm, nn.modules.batchnorm._BatchNorm)


def _eps(norm: nn.Module) -> float:
    return float(getattr(norm, "eps", 1e-5))


def batch_norm(norms: Sequence[nn.Module], parts: Sequence[torch.Tensor], dim: int) -> torch.Tensor:
    """Each replica's own batch norm module on its own contiguous part: its statistics, its running
    buffers, and the very kernel a job alone runs (a wider fused call sums in another order, and Adam
    turns that rounding noise in the zero gradient of the bias before a batch norm into visible steps)."""
    return torch.stack([norm(part.contiguous()) for norm, part in zip(norms, parts, strict=True)], dim=dim)


class Affine:
    """A weight and bias shared by R replicas as two stacked leaves."""

    def __init__(self, layers: Sequence[Any]) -> None:
        weights, biases = [layer.weight for layer in layers], [layer.bias for layer in layers]
        self.weight, self.bias = share(weights), share(biases)
        self.shared = [(self.weight, weights), (self.bias, biases)]


class Norm:
    """One normalization position of R replicas: none, batch (each its own module) or layer (stacked)."""

    def __init__(self, norms: Sequence[nn.Module]) -> None:
        first = norms[0]
        self.kind = (
            "none" if isinstance(first, nn.Identity) else "batch" if _is_batch_norm(first) else "layer"
        )
        self.modules = norms
        self.eps = _eps(first)
        self.affine = Affine(norms) if self.kind == "layer" else None


def linear(x: torch.Tensor, layer: Affine) -> torch.Tensor:
    """(R, N, in) -> (R, N, out): every replica's x Wᵀ + b in one batched product."""
    return torch.baddbmm(layer.bias.unsqueeze(1), x, layer.weight.transpose(1, 2))


Runs = list[tuple[int, int, nn.Module]]  # replicas [start, stop) and the activation they share


def runs(keys: Sequence[object]) -> list[tuple[int, int]]:
    """(start, stop) of each run of neighbouring replicas with equal keys (a group orders its replicas by
    activation, so that each activation, and each way of reading one, is one run)."""
    bounds: list[tuple[int, int]] = []
    for row, key in enumerate(keys):
        if bounds and keys[bounds[-1][0]] == key:
            bounds[-1] = (bounds[-1][0], row + 1)
        else:
            bounds.append((row, row + 1))
    return bounds


def activation_runs(activations: Sequence[nn.Module]) -> Runs:
    """The replicas' activations as runs of neighbours that share one."""
    return [(start, stop, activations[start]) for start, stop in runs([repr(a) for a in activations])]


def activate(x: torch.Tensor, runs: Runs, dim: int, width: int = 1) -> torch.Tensor:
    """Each replica's own activation on its part of x (replica r's `width` slices of `dim` from r·width):
    element-wise, so a part gets exactly the values it gets alone."""
    if len(runs) == 1:
        return runs[0][2](x)
    parts = [act(x.narrow(dim, start * width, (stop - start) * width)) for start, stop, act in runs]
    return torch.cat(parts, dim=dim)


class StackedHidden:
    """The hidden blocks of R replicas on (R, N, F) inputs."""

    def __init__(self, stacks: Sequence[HiddenStack]) -> None:
        first = stacks[0]
        self.names = first.names()
        self.activations = activation_runs([s.activation for s in stacks])
        self.dropout = first.dropout.p if first.dropout is not None else 0.0
        self.linears = [Affine([s.linears[i] for s in stacks]) for i in range(len(first.linears))]
        self.norms = [Norm([s.norms[i] for s in stacks]) for i in range(len(first.linears))]

    def __call__(
        self, x: torch.Tensor, dropout: DropoutMasks | None, internals: Internals | None
    ) -> torch.Tensor:
        """Linear -> normalization -> activation -> dropout, each layer for all replicas at once."""
        replicas = x.shape[0]
        for name, layer, norm in zip(self.names, self.linears, self.norms, strict=True):
            net_input = linear(x, layer)
            if norm.kind == "batch":
                net_input = batch_norm(norm.modules, net_input.unbind(0), dim=0)
            elif norm.affine is not None:
                width = net_input.shape[-1]
                scale, shift = norm.affine.weight.unsqueeze(1), norm.affine.bias.unsqueeze(1)
                net_input = F.layer_norm(net_input, (width,), eps=norm.eps) * scale + shift
            x = activate(net_input, self.activations, dim=0)
            if internals is not None:
                internals[name] = LayerInternals(net_input.detach(), x.detach(), unit_dim=2)
            if self.dropout > 0 and dropout is not None:
                x = x * dropout.masks([x[r].shape for r in range(replicas)], self.dropout, dim=0)
        return x


class DropoutMasks:
    """Each replica's dropout masks, drawn from its own generator exactly as nn.Dropout draws them alone."""

    def __init__(self, generators: Sequence[torch.Generator]) -> None:
        self.generators = generators

    def masks(self, shapes: Sequence[torch.Size], p: float, dim: int) -> torch.Tensor:
        """Scaled keep-masks, one per replica, stacked along `dim` (the replica axis of the tensor)."""
        keep = []
        for shape, generator in zip(shapes, self.generators, strict=True):
            noise = torch.empty(shape, device=generator.device).bernoulli_(1 - p, generator=generator)
            keep.append(noise.div_(1 - p))  # as ATen's dropout: bernoulli_(1 - p), then divide
        return torch.stack(keep, dim=dim)


class StackedNetwork:
    """R replicas of an mlp or cnn as one forward pass on shared leaves; outputs (R, N, outputs).

    Parameters of batch norm stay the replicas' own (each runs its own module); every other parameter
    is a view of a stacked leaf (`leaves`) while this object lives.
    """

    def __init__(self, models: Sequence[Network]) -> None:
        self.models = models
        first = models[0]
        self.cnn = isinstance(first, CNN)
        if isinstance(first, CNN):
            cnns = [m for m in models if isinstance(m, CNN)]
            self.convs = [Affine([m.convs[i] for m in cnns]) for i in range(len(first.convs))]
            self.conv_norms = [Norm([m.norms[i] for m in cnns]) for i in range(len(first.convs))]
            self.pool, self.conv_activations = first.pool, activation_runs([m.activation for m in cnns])
            self.conv_dropout = first.dropout.p if first.dropout is not None else 0.0
        self.hidden = StackedHidden([m.hidden for m in models if isinstance(m, MLP | CNN)])
        self.output = Affine([m.output for m in models])
        affines = [self.output, *self.hidden.linears, *(n.affine for n in self.hidden.norms)]
        if self.cnn:
            affines += [*self.convs, *(n.affine for n in self.conv_norms)]
        self.shared = [pair for a in affines if a is not None for pair in a.shared]  # (leaf, its rows)
        self.leaves = [leaf for leaf, _ in self.shared]
        shared = {id(p) for _, rows in self.shared for p in rows}
        own = [p for m in models for p in m.parameters() if id(p) not in shared]  # batch norm's
        for param in own:  # a gradient to add into from the first step, as the shared ones have
            param.grad = torch.zeros_like(param)
        self.gradients = [t.grad for t in [*self.leaves, *own] if t.grad is not None]
        self.own = [[p for p in m.parameters() if id(p) not in shared] for m in models]

    def zero_grad(self) -> None:
        """Zero every replica's gradients in place (they are views that must stay views)."""
        torch._foreach_zero_(self.gradients)

    def __call__(
        self, x: torch.Tensor, dropout: DropoutMasks | None, internals: Internals | None = None
    ) -> torch.Tensor:
        """x: (R, N, ...) -> (R, N, outputs); dropout None in eval mode. `internals` gets each hidden
        layer's net input and output for all replicas, replica first."""
        x = self._features(x, dropout, internals) if self.cnn else x.flatten(2)
        x = self.hidden(x, dropout, internals)
        return linear(x, self.output)

    def _features(
        self, x: torch.Tensor, dropout: DropoutMasks | None, internals: Internals | None
    ) -> torch.Tensor:
        """Convolution blocks on (N, R·C, H, W): one grouped convolution covers every replica."""
        replicas, examples = x.shape[0], x.shape[1]
        x = x.transpose(0, 1).reshape(examples, -1, *x.shape[3:])
        for i, (conv, norm) in enumerate(zip(self.convs, self.conv_norms, strict=True)):
            weight, bias = conv.weight.flatten(0, 1), conv.bias.flatten()
            net_input = F.conv2d(x, weight, bias, padding="same", groups=replicas)
            if norm.kind == "batch":
                parts = net_input.unflatten(1, (replicas, -1)).unbind(1)
                net_input = batch_norm(norm.modules, parts, dim=1).flatten(1, 2)
            elif norm.affine is not None:  # layer norm: one group per replica spans its channels and pixels
                weights, biases = norm.affine.weight.flatten(), norm.affine.bias.flatten()
                net_input = F.group_norm(net_input, replicas, weights, biases, norm.eps)
            x = activate(net_input, self.conv_activations, dim=1, width=net_input.shape[1] // replicas)
            if internals is not None:  # replica first: (R, N, C, H, W)
                split_n = net_input.detach().unflatten(1, (replicas, -1)).transpose(0, 1)
                split_a = x.detach().unflatten(1, (replicas, -1)).transpose(0, 1)
                internals[f"conv{i + 1}"] = LayerInternals(split_n, split_a, unit_dim=2)
            x = self.pool(x)
            if self.conv_dropout > 0 and dropout is not None:
                shape = (examples, x.shape[1] // replicas, *x.shape[2:])
                masks = dropout.masks([torch.Size(shape)] * replicas, self.conv_dropout, dim=1)
                x = x * masks.flatten(1, 2)
        return x.unflatten(1, (replicas, -1)).flatten(2).transpose(0, 1)
