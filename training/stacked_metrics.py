"""What a replica group measures per step, for all its replicas at once: the loss of each replica,
each one's global gradient norm and clipping, and the epoch's running sums, kept as (R,) rows on the device.

Every function here is the single-job one (training/optim.py, training/metrics.py) with a leading
replica axis: the same operations on the same numbers, reduced per replica instead of once.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch.nn import functional as F

from training.metrics import EpochSums
from training.spec import Clipping, JobSpec, Loss, NormClipping, Task, ValueClipping

StackedLoss = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def _per_replica_mean(values: torch.Tensor) -> torch.Tensor:
    return values.flatten(1).mean(dim=1)


def stacked_loss(spec: JobSpec, task: Task) -> StackedLoss:
    """(R, N, outputs), (R, N, ...) -> (R,): each replica's loss_function(spec, task) on its own batch."""
    loss = spec.training.loss
    if loss == Loss.auto:
        loss = Loss.cross_entropy if task == Task.classification else Loss.mse
    if loss == Loss.cross_entropy:  # a regression task was refused when the replica's trainer was built

        def cross_entropy(out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
            # classes as dim 1, (R, C, N): log-softmax then runs along the examples (5-8x faster on CPU
            # than along 10 classes in the last dim)
            return _per_replica_mean(F.cross_entropy(out.transpose(1, 2), y, reduction="none"))

        return cross_entropy
    if task == Task.classification:

        def soft_mse(out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
            target = F.one_hot(y, out.shape[-1]).to(out.dtype)
            return _per_replica_mean(F.mse_loss(torch.softmax(out, dim=-1), target, reduction="none"))

        return soft_mse
    return lambda out, y: _per_replica_mean(F.mse_loss(out, y, reduction="none"))


class StackedClipping:
    """Each replica's pre-clip global gradient norm and its own clipping, over all replicas' gradients."""

    def __init__(
        self,
        clippings: Sequence[Clipping | None],
        grads: Sequence[Sequence[torch.Tensor]],
        stacked: Sequence[torch.Tensor],
        own: Sequence[Sequence[torch.Tensor]],
    ) -> None:
        """`grads`: each replica's gradients; `stacked`: (R, ...) gradients that hold rows of them;
        `own`: each replica's gradients held in no stacked one."""
        self.replicas = len(grads)
        self.grads = [g for replica in grads for g in replica]  # replica-major: row r is replica r
        self.count = len(grads[0])
        self.stacked, self.own = list(stacked), [g for replica in own for g in replica]
        device = self.grads[0].device
        by_norm = [r for r, c in enumerate(clippings) if isinstance(c, NormClipping)]
        self.by_norm = [g for r in by_norm for g in grads[r]]
        limits = [c.max_norm if isinstance(c, NormClipping) else float("inf") for c in clippings]
        self.max_norm = torch.tensor(limits, device=device)
        self.norm_rows = torch.tensor(by_norm, dtype=torch.long, device=device)
        self.by_value = [(r, c.max_value) for r, c in enumerate(clippings) if isinstance(c, ValueClipping)]
        self.clips = any(c is not None for c in clippings)

    def norms(self) -> torch.Tensor:
        """(R,) global gradient norms: each replica's norm over its parameters' norms, as alone."""
        parts = [torch.linalg.vector_norm(g.flatten(1), dim=1) for g in self.stacked]
        if self.own:
            parts.extend(torch.stack(torch._foreach_norm(self.own)).view(self.replicas, -1).T)
        return torch.linalg.vector_norm(torch.stack(parts), dim=0)

    def __call__(self) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Clip in place; (R,) pre-clip norms and (R,) whether clipping acted (None: no replica clips)."""
        norms = self.norms()
        if not self.clips:
            return norms, None
        acted = norms > self.max_norm
        if self.by_norm:  # as clip_grad_norm_: scale by max_norm / (norm + 1e-6), at most 1
            scale = (self.max_norm / (norms + 1e-6)).clamp(max=1.0)[self.norm_rows]
            torch._foreach_mul_(self.by_norm, list(scale.repeat_interleave(self.count).unbind()))
        for row, limit in self.by_value:  # as clip_grad_value_: clamp every element
            grads = self.grads[row * self.count : (row + 1) * self.count]
            largest = torch.stack(torch._foreach_norm(grads, float("inf"))).max()
            acted[row] = largest > limit
            torch._foreach_clamp_min_(grads, -limit)
            torch._foreach_clamp_max_(grads, limit)
        return norms, acted.float()


class StackedSums:
    """EpochSums of R replicas as (R,) rows: one set of device operations per step for all of them."""

    def __init__(self, replicas: int, device: torch.device) -> None:
        zero = torch.zeros(replicas, device=device)
        self.loss, self.correct, self.clipped = zero.clone(), zero.clone(), zero.clone()
        self.grad_norm, self.grad_norm_max = zero.clone(), zero.clone()
        self.examples = self.steps = 0

    def add(
        self,
        losses: torch.Tensor,
        out: torch.Tensor | None,
        y: torch.Tensor,
        norms: torch.Tensor,
        clipped: torch.Tensor | None,
    ) -> None:
        """One step: losses (R,), outputs (R, N, C) of classifiers (else None), norms and clipping (R,)."""
        examples = y.shape[1]
        self.loss.add_(losses.detach(), alpha=examples)
        if out is not None:
            self.correct += (out.detach().argmax(dim=-1) == y).sum(dim=1)
        self.grad_norm += norms
        torch.maximum(self.grad_norm_max, norms, out=self.grad_norm_max)
        if clipped is not None:
            self.clipped += clipped
        self.examples += examples
        self.steps += 1

    def row(self, replica: int) -> ReplicaSums:
        """Replica's sums, as its trainer reads them."""
        return ReplicaSums(self, replica)


class ReplicaSums(EpochSums):
    """One replica's row of StackedSums (every step took a gradient norm, as the single-job loop does)."""

    def __init__(self, stacked: StackedSums, replica: int) -> None:
        self.stacked, self.replica = stacked, replica
        self.examples, self.steps, self.grad_norms = stacked.examples, stacked.steps, stacked.steps

    def means(self) -> dict[str, torch.Tensor]:
        """Per-example and per-step means of this replica, still on the device."""
        s, r = self.stacked, self.replica
        return {
            "loss": s.loss[r] / self.examples,
            "correct": s.correct[r] / self.examples,
            "grad_norm": s.grad_norm[r] / max(self.steps, 1),
            "grad_norm_max": s.grad_norm_max[r],
            "clipped": s.clipped[r] / self.steps,
        }


def select_rows(sums: StackedSums, rows: Sequence[int]) -> StackedSums:
    """The sums of the replicas at `rows` (the others were dropped mid-epoch)."""
    index = torch.tensor(list(rows), dtype=torch.long, device=sums.loss.device)
    kept = StackedSums(len(rows), sums.loss.device)
    for name in ("loss", "correct", "clipped", "grad_norm", "grad_norm_max"):
        setattr(kept, name, getattr(sums, name)[index])
    kept.examples, kept.steps = sums.examples, sums.steps
    return kept
