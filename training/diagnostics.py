"""Per-layer diagnostics, sampled on a few steps per epoch and read from the device once per epoch."""

from __future__ import annotations

import math
from collections.abc import Iterator
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


def add_counts(into: list[list[int]], counts: list[list[int]]) -> None:
    """Add a (FIELDS × groups) table of sample counts into another, in place."""
    for row, found in zip(into, counts, strict=True):
        row[:] = [count + new for count, new in zip(row, found, strict=True)]


def _joint_norm(norms: list[torch.Tensor]) -> torch.Tensor:
    """The L2 norm of several tensors together, from their own norms."""
    return torch.linalg.vector_norm(torch.stack(norms))


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

    @property
    def rules(self) -> tuple[object, ...]:
        """How this job's activation is read (saturation, dead units): replicas sampled as one share them."""
        return (self.saturation, self.saturated_output, self.track_dead, self.center)

    def start_epoch(self) -> None:
        """Reset the sums and remember the weights, to measure this epoch's update."""
        self.start_weights = [[w.detach().clone() for w in weights] for _, weights in self.groups]
        device = self.groups[0][1][0].device
        self.samples = 0
        self.sums = torch.zeros(len(FIELDS), len(self.groups), device=device)
        self.seen = [[0] * len(self.groups) for _ in FIELDS]  # known on the host: no device counters
        self.zero = torch.zeros((), device=device)
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
            others = [dim for dim in range(source.dim()) if dim != item.unit_dim]
            fired = source.amax(dim=others) > 0  # a max reduces in place: any() over a copy is 8x slower
            self.fired[index] = fired | self.fired[index] if index in self.fired else fired

    def watch(self, step: int, inputs: torch.Tensor) -> tuple[torch.Tensor, Internals | None]:
        """The step's inputs, and a dict for the network to fill when this step is sampled (else None)."""
        if self.every == 0 or step % self.every != 0:
            return inputs, None
        if self.sequences:  # to see how far back in time the error signal reaches
            inputs = inputs.detach().requires_grad_(True)
        return inputs, {}

    def _group_norms(self) -> list[torch.Tensor]:
        """‖∂L/∂W‖ of each weight group (0 where a weight got no gradient), from one foreach call."""
        grads = [w.grad for _, ws in self.groups for w in ws if w.grad is not None]
        norms = iter(torch._foreach_norm(grads) if grads else [])
        groups = [[next(norms) if w.grad is not None else self.zero for w in ws] for _, ws in self.groups]
        return [parts[0] if len(parts) == 1 else _joint_norm(parts) for parts in groups]

    def sample(self, internals: Internals, outputs: torch.Tensor, inputs: torch.Tensor) -> None:
        """Add one step's statistics; call after backward, before clipping and the optimizer step."""
        if self.sequences and inputs.grad is not None:
            per_step = inputs.grad.detach().transpose(0, 1).flatten(1).norm(dim=1)
            self.reach += torch.stack([per_step[0], per_step[-1]])
        columns = len(self.groups)
        values = [self._group_norms(), [self.zero] * columns, [self.zero] * columns, [self.zero] * columns]
        present = [[1] * columns, [0] * columns, [0] * columns, [0] * columns]
        for row, index, value in self.activation_statistics(internals, outputs):
            values[row][index], present[row][index] = value, 1
        self.sums += torch.stack([value.float() for row in values for value in row]).view(len(FIELDS), -1)
        add_counts(self.seen, present)
        self.samples += 1

    def activation_statistics(
        self, internals: Internals, outputs: torch.Tensor, per_replica: bool = False
    ) -> Iterator[tuple[int, int, torch.Tensor]]:
        """(FIELDS row, layer, value) of each sampled activation statistic: one number per layer, or with
        `per_replica` one per row of stacked (replica-first) tensors."""

        def mean(tensor: torch.Tensor) -> torch.Tensor:
            return tensor.mean(dim=list(range(1, tensor.dim()))) if per_replica else tensor.mean()

        def std(tensor: torch.Tensor) -> torch.Tensor:
            if per_replica:
                return tensor.std(dim=list(range(1, tensor.dim())), correction=0)
            return tensor.std(unbiased=False)

        for index, name in enumerate(self.names):
            item = internals.get(name)
            if name == "output":
                activation, net_input = outputs.detach(), None
            elif item is not None:
                activation, net_input = item.output, item.net_input
            else:
                continue
            yield 1, index, mean(activation)
            yield 2, index, std(activation)
            if name == "output":
                continue
            if self.saturation == "net_input" and net_input is not None:
                yield 3, index, mean((net_input.abs() > SATURATION_THRESHOLD).float())
            elif self.saturation == "output" and self.saturated_output is not None:
                yield 3, index, mean(((activation - self.center).abs() > self.saturated_output).float())

    def _by_group(self, per_tensor: list[torch.Tensor]) -> list[torch.Tensor]:
        """Per-tensor norms (the groups' tensors in order) -> each group's joint norm."""
        norms = iter(per_tensor)
        groups = [[next(norms) for _ in ws] for _, ws in self.groups]
        return [parts[0] if len(parts) == 1 else _joint_norm(parts) for parts in groups]

    def readings(self) -> torch.Tensor:
        """Every number end_epoch reports, as one flat tensor on the device: read it with the epoch's own.

        Layout: weight norms, update norms and start norms (a group each), the dead fractions of
        self.fired, the FIELDS means (row by row), and the two reach means.
        """
        now = [w.detach() for _, ws in self.groups for w in ws]
        start = [w for ws in self.start_weights for w in ws]
        moved = torch._foreach_sub(now, start)
        norms = [self._by_group(list(torch._foreach_norm(tensors))) for tensors in (now, moved, start)]
        dead = [1.0 - fired.float().mean() for fired in self.fired.values()]
        seen = torch.tensor(self.seen, dtype=self.sums.dtype, device=self.sums.device).clamp(min=1)
        means = (self.sums / seen).flatten()
        reach = self.reach / max(self.samples, 1)
        return torch.cat([torch.stack([*norms[0], *norms[1], *norms[2], *dead]), means, reach])

    def fields(self, values: list[float]) -> dict[str, Any]:
        """The epoch record's diagnostic fields from readings() as read: `layers` (input side first), and
        the reach of sequences."""
        count = len(self.groups)
        weight_norm, delta_norm, start_norm = (values[i * count : (i + 1) * count] for i in range(3))
        at = 3 * count
        dead_fraction = dict(zip(self.fired, values[at : at + len(self.fired)], strict=True))
        at += len(self.fired)
        means = [values[at + row * count : at + (row + 1) * count] for row in range(len(FIELDS))]
        first, last = values[at + len(FIELDS) * count :]
        layers = []
        for i, name in enumerate(self.names):
            entry: dict[str, Any] = {"name": name}
            for row, field in enumerate(FIELDS):
                entry[field] = means[row][i] if self.seen[row][i] > 0 else None
            entry["dead_fraction"] = dead_fraction.get(i)
            entry["weight_norm"] = weight_norm[i]
            entry["update_ratio"] = delta_norm[i] / start_norm[i] if start_norm[i] > 0 else None
            layers.append(LayerDiagnostics(**entry))
        fields: dict[str, Any] = {"layers": layers}
        if self.sequences:
            fields["grad_first_step"] = first if self.samples else None
            fields["grad_last_step"] = last if self.samples else None
        return fields

    def end_epoch(self) -> dict[str, Any]:
        """The epoch record's diagnostic fields, read from the device on their own."""
        return self.fields(self.readings().tolist())
