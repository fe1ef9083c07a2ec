"""Per-layer diagnostics, sampled on a few steps per epoch and read from the device once per epoch."""

from __future__ import annotations

import math
from typing import Any

import torch

from training.callbacks import Callback
from training.network import Internals, Network, saturation_source, tracks_dead_units
from training.records import LayerDiagnostics
from training.spec import Activation, JobSpec

# A sigmoid-type unit is effectively saturated once |net input| > 3 (σ'(3) ≈ 0.045, near zero).
SATURATION_THRESHOLD = 3.0
# Where only the output a is exposed (fused recurrent kernels), |n| > 3 is read off a instead.
SATURATED_OUTPUT = {
    Activation.tanh: math.tanh(SATURATION_THRESHOLD),  # |a| > tanh(3)
    Activation.sigmoid: 1 / (1 + math.exp(-SATURATION_THRESHOLD)) - 0.5,  # |a - 1/2| > σ(3) - 1/2
}
FIELDS = ("grad_norm", "activation_mean", "activation_std", "saturated_fraction")  # sampled on steps


def _per_unit(tensor: torch.Tensor, unit_dim: int) -> torch.Tensor:
    """(units, everything else): each unit's values over examples, time steps and pixels."""
    return tensor.movedim(unit_dim, 0).reshape(tensor.shape[unit_dim], -1)


class Diagnostics(Callback):
    """Samples gradient norms and activation statistics per weight group every `diagnostics_every` steps.

    Its sums start afresh each epoch and checkpoints fall between epochs: no state to save.
    """

    def __init__(self, model: Network, spec: JobSpec, sequences: bool) -> None:
        self.model = model
        self.every = spec.training.diagnostics_every
        self.sequences = sequences
        self.groups = model.weight_groups()
        self.names = [name for name, _ in self.groups]
        self.saturation = saturation_source(spec)
        self.saturated_output = SATURATED_OUTPUT.get(spec.activation)
        self.track_dead = tracks_dead_units(spec)
        self.center = 0.5 if spec.activation == Activation.sigmoid else 0.0
        self.start_epoch()

    def start_epoch(self) -> None:
        """Reset the sums and remember the weights, to measure this epoch's update."""
        self.start_weights = [[w.detach().clone() for w in weights] for _, weights in self.groups]
        device = self.groups[0][1][0].device
        self.samples = 0
        self.sums = torch.zeros(len(FIELDS), len(self.groups), device=device)
        self.seen = torch.zeros(len(FIELDS), len(self.groups), device=device)
        self.reach = torch.zeros(2, device=device)  # sequences: ‖∂L/∂x‖ at the first and last time step
        self.fired: dict[int, torch.Tensor] = {}  # per weight group: which units some example activated

    @property
    def counts_dead_units(self) -> bool:
        """Whether observe() should see the eval-mode pass over the training sample."""
        return self.track_dead and self.every > 0

    def observe(self, internals: Internals) -> None:
        """Note which units fire (net input > 0) on some example of an eval-mode pass (chunk by chunk)."""
        for index, name in enumerate(self.names):
            item = internals.get(name)
            if item is None:
                continue
            source = item.net_input if item.net_input is not None else item.output
            fired = (_per_unit(source, item.unit_dim) > 0).any(dim=1)
            self.fired[index] = fired | self.fired[index] if index in self.fired else fired

    def watch(self, step: int, inputs: torch.Tensor) -> tuple[torch.Tensor, Internals | None]:
        """The step's inputs, and a dict for the network to fill when this step is sampled (else None)."""
        if self.every == 0 or step % self.every != 0:
            return inputs, None
        if self.sequences:  # to see how far back in time the error signal reaches
            inputs = inputs.detach().requires_grad_(True)
        return inputs, {}

    def _group_norm(self, tensors: list[torch.Tensor]) -> torch.Tensor:
        return torch.linalg.vector_norm(torch.stack(torch._foreach_norm(tensors)))

    def sample(self, internals: Internals, outputs: torch.Tensor, inputs: torch.Tensor) -> None:
        """Add one step's statistics; call after backward, before clipping and the optimizer step."""
        if self.sequences and inputs.grad is not None:
            per_step = inputs.grad.detach().transpose(0, 1).flatten(1).norm(dim=1)
            self.reach += torch.stack([per_step[0], per_step[-1]])
        values = torch.zeros_like(self.sums)
        present = torch.zeros_like(self.sums)
        grads = [
            self._group_norm([w.grad if w.grad is not None else w * 0 for w in ws]) for _, ws in self.groups
        ]
        values[0], present[0] = torch.stack(grads), 1.0
        for index, name in enumerate(self.names):
            item = internals.get(name)
            if name == "output":
                activation, net_input = outputs.detach(), None
            elif item is not None:
                activation, net_input = item.output, item.net_input
            else:
                continue
            values[1, index], values[2, index] = activation.mean(), activation.std(unbiased=False)
            present[1:3, index] = 1.0
            if name == "output":
                continue
            if self.saturation == "net_input" and net_input is not None:
                values[3, index] = (net_input.abs() > SATURATION_THRESHOLD).float().mean()
                present[3, index] = 1.0
            elif self.saturation == "output" and self.saturated_output is not None:
                values[3, index] = ((activation - self.center).abs() > self.saturated_output).float().mean()
                present[3, index] = 1.0
        self.sums += values
        self.seen += present
        self.samples += 1

    def end_epoch(self) -> dict[str, Any]:
        """The epoch record's diagnostic fields: `layers` (input side first), and the reach of sequences."""
        weights = [torch.cat([w.detach().flatten() for w in ws]) for _, ws in self.groups]
        starts = [torch.cat([w.flatten() for w in ws]) for ws in self.start_weights]
        norms = torch.stack(
            [
                torch.stack(torch._foreach_norm(weights)),
                torch.stack(torch._foreach_norm(torch._foreach_sub(weights, starts))),
                torch.stack(torch._foreach_norm(starts)),
            ]
        )
        means = (self.sums / self.seen.clamp(min=1)).tolist()
        seen = self.seen.tolist()
        weight_norm, delta_norm, start_norm = norms.tolist()
        dead_fraction: dict[int, float] = {}
        if self.fired:
            dead = torch.stack([1.0 - fired.float().mean() for fired in self.fired.values()]).tolist()
            dead_fraction = dict(zip(self.fired, dead, strict=True))
        layers = []
        for i, name in enumerate(self.names):
            entry: dict[str, Any] = {"name": name}
            for row, field in enumerate(FIELDS):
                entry[field] = means[row][i] if seen[row][i] > 0 else None
            entry["dead_fraction"] = dead_fraction.get(i)
            entry["weight_norm"] = weight_norm[i]
            entry["update_ratio"] = delta_norm[i] / start_norm[i] if start_norm[i] > 0 else None
            layers.append(LayerDiagnostics(**entry))
        fields: dict[str, Any] = {"layers": layers}
        if self.sequences:
            first, last = (self.reach / max(self.samples, 1)).tolist()
            fields["grad_first_step"] = first if self.samples else None
            fields["grad_last_step"] = last if self.samples else None
        return fields
