"""R networks of one architecture run as one: parameters stacked along a leading replica axis.

Each replica's own module (built and initialized exactly as a job run alone builds it) keeps its
parameters; a forward pass stacks them, so autograd hands every replica's module its own gradients
and the single-job optimizer, clipping, diagnostics and checkpoints apply to it unchanged.
Linear layers are batched matrix products (baddbmm), convolutions one grouped convolution.
"""

from __future__ import annotations

import inspect
from collections.abc import Sequence
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

from training.network import CNN, MLP, HiddenStack, Internals, LayerInternals, Network


def _stack(tensors: Sequence[Any]) -> torch.Tensor:
    return torch.stack(list(tensors))


def _cat(tensors: Sequence[Any]) -> torch.Tensor:
    return torch.cat(list(tensors))


def _replica_norm(norms: Sequence[nn.Module]) -> Sequence[nn.Module] | None:
    return None if isinstance(norms[0], nn.Identity) else norms


def _eps(norms: Sequence[nn.Module]) -> float:
    eps = getattr(norms[0], "eps", 1e-5)
    return float(eps)


def _is_batch_norm(norms: Sequence[nn.Module]) -> bool:
    return isinstance(norms[0], nn.modules.batchnorm._BatchNorm)


def batch_norm(norms: Sequence[nn.Module], parts: Sequence[torch.Tensor], dim: int) -> torch.Tensor:
    """Each replica's own batch norm module on its own contiguous part: its statistics, its running
    buffers, and the very kernel a job alone runs (a wider fused call sums in another order, and Adam
    turns that rounding noise in the zero gradient of the bias before a batch norm into visible steps)."""
    return torch.stack([norm(part.contiguous()) for norm, part in zip(norms, parts, strict=True)], dim=dim)


class StackedHidden:
    """The hidden blocks of R replicas on (R, N, F) inputs."""

    def __init__(self, stacks: Sequence[HiddenStack]) -> None:
        self.stacks = stacks
        first = stacks[0]
        self.names = first.names()
        self.activation = first.activation
        self.dropout = first.dropout.p if first.dropout is not None else 0.0
        self.norms = [_replica_norm([s.norms[i] for s in stacks]) for i in range(len(first.linears))]

    def __call__(
        self, x: torch.Tensor, dropout: DropoutMasks, internals: list[Internals] | None
    ) -> torch.Tensor:
        """Linear -> normalization -> activation -> dropout, each layer for all replicas at once."""
        replicas = x.shape[0]
        for i, name in enumerate(self.names):
            net_input = linear(x, [s.linears[i] for s in self.stacks])
            norm = self.norms[i]
            if norm is not None and _is_batch_norm(norm):
                net_input = batch_norm(norm, net_input.unbind(0), dim=0)
            elif norm is not None:
                width = net_input.shape[-1]
                scale = _stack([n.weight for n in norm]).unsqueeze(1)
                shift = _stack([n.bias for n in norm]).unsqueeze(1)
                net_input = F.layer_norm(net_input, (width,), eps=_eps(norm)) * scale + shift
            x = self.activation(net_input)
            if internals is not None:
                for r, found in enumerate(internals):
                    found[name] = LayerInternals(net_input[r].detach(), x[r].detach())
            if self.dropout > 0:
                x = x * dropout.masks([x[r].shape for r in range(replicas)], self.dropout, dim=0)
        return x


def linear(x: torch.Tensor, layers: Sequence[Any]) -> torch.Tensor:
    """(R, N, in) -> (R, N, out): every replica's x Wᵀ + b in one batched product."""
    weight = _stack([layer.weight for layer in layers])
    bias = _stack([layer.bias for layer in layers])
    return torch.baddbmm(bias.unsqueeze(1), x, weight.transpose(1, 2))


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
    """R replicas of an mlp or cnn as one forward pass; outputs (R, N, outputs)."""

    def __init__(self, models: Sequence[Network]) -> None:
        self.models = models
        first = models[0]
        self.cnn = isinstance(first, CNN)
        self.hidden = StackedHidden([m.hidden for m in models if isinstance(m, MLP | CNN)])
        if isinstance(first, CNN):
            cnns = [m for m in models if isinstance(m, CNN)]
            self.convs = [[m.convs[i] for m in cnns] for i in range(len(first.convs))]
            self.conv_norms = [_replica_norm([m.norms[i] for m in cnns]) for i in range(len(first.convs))]
            self.pool, self.conv_activation = first.pool, first.activation
            self.conv_dropout = first.dropout.p if first.dropout is not None else 0.0

    def __call__(
        self, x: torch.Tensor, dropout: DropoutMasks, internals: list[Internals] | None = None
    ) -> torch.Tensor:
        """x: (R, N, ...) -> (R, N, outputs)."""
        x = self._features(x, dropout, internals) if self.cnn else x.flatten(2)
        x = self.hidden(x, dropout, internals)
        return linear(x, [m.output for m in self.models])

    def _features(
        self, x: torch.Tensor, dropout: DropoutMasks, internals: list[Internals] | None
    ) -> torch.Tensor:
        """Convolution blocks on (N, R·C, H, W): one grouped convolution covers every replica."""
        replicas, examples = x.shape[0], x.shape[1]
        x = x.transpose(0, 1).reshape(examples, -1, *x.shape[3:])
        for i, convs in enumerate(self.convs):
            weight, bias = _cat([c.weight for c in convs]), _cat([c.bias for c in convs])
            net_input = F.conv2d(x, weight, bias, padding="same", groups=replicas)
            norm = self.conv_norms[i]
            if norm is not None and _is_batch_norm(norm):
                parts = net_input.unflatten(1, (replicas, -1)).unbind(1)
                net_input = batch_norm(norm, parts, dim=1).flatten(1, 2)
            elif norm is not None:  # layer norm: one group per replica spans its channels and pixels
                weights, biases = _cat([n.weight for n in norm]), _cat([n.bias for n in norm])
                net_input = F.group_norm(net_input, replicas, weights, biases, _eps(norm))
            x = self.conv_activation(net_input)
            if internals is not None:
                split_n = net_input.detach().unflatten(1, (replicas, -1))
                split_a = x.detach().unflatten(1, (replicas, -1))
                for r, found in enumerate(internals):
                    found[f"conv{i + 1}"] = LayerInternals(split_n[:, r], split_a[:, r])
            x = self.pool(x)
            if self.conv_dropout > 0:
                shape = (examples, x.shape[1] // replicas, *x.shape[2:])
                masks = dropout.masks([torch.Size(shape)] * replicas, self.conv_dropout, dim=1)
                x = x * masks.flatten(1, 2)
        return x.unflatten(1, (replicas, -1)).flatten(2).transpose(0, 1)


def _settings(optimizer: torch.optim.Optimizer, group: dict[str, Any]) -> dict[str, Any]:
    """A parameter group's settings a constructor takes (not a scheduler's initial_lr)."""
    accepted = inspect.signature(type(optimizer)).parameters
    return {k: v for k, v in group.items() if k in accepted and k != "params"}


def _hyperparameters(optimizer: torch.optim.Optimizer) -> str:
    """The optimizer's class and its parameter groups' settings (learning rates included)."""
    groups = [
        sorted((k, repr(v)) for k, v in _settings(optimizer, g).items()) for g in optimizer.param_groups
    ]
    return repr((type(optimizer), groups))


class JointOptimizers:
    """Steps the replicas' own optimizers as few torch optimizers as their settings allow: one for all
    replicas whose optimizer class and settings (learning rates included) agree.

    A joint optimizer has the replicas' parameter groups side by side and shares each parameter's state
    dict with the replica's own optimizer, so the replica's state_dict (checkpoints) and schedulers (which
    set its learning rate) stay its own. Optimizers are element-wise: stepping a joint list is stepping
    each replica on its own.
    """

    def __init__(self, optimizers: Sequence[torch.optim.Optimizer]) -> None:
        by_settings: dict[str, list[torch.optim.Optimizer]] = {}
        for optimizer in optimizers:
            by_settings.setdefault(_hyperparameters(optimizer), []).append(optimizer)
        self.joint: list[torch.optim.Optimizer] = []
        for same in by_settings.values():
            first = same[0]
            if len(same) == 1:
                self.joint.append(first)
                continue
            groups = [
                {
                    **_settings(first, group),
                    "params": [p for o in same for p in o.param_groups[index]["params"]],
                }
                for index, group in enumerate(first.param_groups)
            ]
            joint = type(first)(groups, **_settings(first, first.param_groups[0]))
            for optimizer in same:
                for group in optimizer.param_groups:
                    for param in group["params"]:
                        joint.state[param] = optimizer.state[param]  # one state dict, two owners
            self.joint.append(joint)

    def zero_grad(self) -> None:
        """Drop every replica's gradients."""
        for optimizer in self.joint:
            optimizer.zero_grad(set_to_none=True)

    def step(self) -> None:
        """One step of every replica."""
        for optimizer in self.joint:
            optimizer.step()
