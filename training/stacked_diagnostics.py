"""Diagnostics of a replica group: Diagnostics.sample for all replicas at once, reduced per replica.

A sampled step's statistics of every replica come from one set of reductions over the replica axis and
add up on the device; at the end of the epoch each replica's Diagnostics gets its row, so its record and
end_epoch() are the job's own.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from training.diagnostics import FIELDS, Diagnostics, add_counts
from training.network import Internals, LayerInternals
from training.stacked import runs
from training.stacked_optim import Shared


def replica_internals(internals: Internals, replica: int) -> Internals:
    """One replica's internals from the stacked ones (replica first)."""
    return {
        name: LayerInternals(
            item.net_input[replica] if item.net_input is not None else None,
            item.output[replica],
            unit_dim=item.unit_dim - 1,
        )
        for name, item in internals.items()
    }


def _weight_leaves(diagnostics: Sequence[Diagnostics], shared: Shared) -> list[torch.Tensor] | None:
    """The stacked leaf of each weight group, whose row r is replica r's weight; None where a group is
    not one such weight (then each replica samples its own)."""
    place = {id(p): (leaf, row) for leaf, rows in shared for row, p in enumerate(rows)}
    leaves = []
    for index in range(len(diagnostics[0].groups)):
        weights = [d.groups[index][1] for d in diagnostics]
        found = [place.get(id(w[0])) if len(w) == 1 else None for w in weights]
        first = found[0]
        if first is None or any(f is None or f[0] is not first[0] or f[1] != r for r, f in enumerate(found)):
            return None  # (identity, not ==: tensors compare element-wise)
        leaves.append(first[0])
    return leaves


def _rows(internals: Internals, start: int, stop: int) -> Internals:
    """Replicas start..stop-1 of the stacked internals (replica first)."""
    return {
        name: LayerInternals(
            item.net_input[start:stop] if item.net_input is not None else None,
            item.output[start:stop],
            unit_dim=item.unit_dim,
        )
        for name, item in internals.items()
    }


class StackedDiagnostics:
    """Samples every replica's diagnostics at once, one set of reductions per run of replicas whose
    activations are read alike (not for sequences: their inputs' gradients are read per replica);
    `usable` says whether it can."""

    def __init__(self, diagnostics: Sequence[Diagnostics], shared: Shared) -> None:
        self.diagnostics = diagnostics
        first = diagnostics[0]
        leaves = _weight_leaves(diagnostics, shared)
        self.usable = not first.sequences and leaves is not None
        self.leaves = leaves or []
        self.runs = runs([d.rules for d in diagnostics])  # replicas whose activations are read alike
        device = first.sums.device
        self.sums = torch.zeros(len(diagnostics), len(FIELDS), len(first.groups), device=device)
        self.seen = [self._no_counts() for _ in self.runs]  # per run, on the host, as Diagnostics keeps it
        self.samples = 0

    def _no_counts(self) -> list[list[int]]:
        return [[0] * len(self.diagnostics[0].groups) for _ in FIELDS]

    def sample(self, internals: Internals, outputs: torch.Tensor) -> None:
        """Add one step's statistics of every replica (after backward, before clipping)."""
        values = torch.zeros_like(self.sums)
        grads = [
            torch.linalg.vector_norm(leaf.grad.flatten(1), dim=1)
            for leaf in self.leaves
            if leaf.grad is not None
        ]
        values[:, 0] = torch.stack(grads, dim=1)
        for (start, stop), seen in zip(self.runs, self.seen, strict=True):
            present = self._no_counts()
            present[0] = [1] * len(present[0])
            part = internals if len(self.runs) == 1 else _rows(internals, start, stop)
            statistics = self.diagnostics[start].activation_statistics(
                part, outputs[start:stop], per_replica=True
            )
            for row, index, value in statistics:
                values[start:stop, row, index], present[row][index] = value, 1
            add_counts(seen, present)
        self.sums += values
        self.samples += 1

    def flush(self) -> None:
        """Hand each replica its sums (before its epoch ends, or before the stack changes mid-epoch)."""
        if not self.samples:
            return
        for (start, stop), seen in zip(self.runs, self.seen, strict=True):
            for row in range(start, stop):
                diagnostics = self.diagnostics[row]
                diagnostics.sums += self.sums[row]
                add_counts(diagnostics.seen, seen)
                diagnostics.samples += self.samples
        self.sums.zero_()
        self.seen = [self._no_counts() for _ in self.runs]
        self.samples = 0
