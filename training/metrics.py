"""What an epoch measures: running sums of the training steps, and eval-mode loss and accuracy of a split."""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import nn

from training.data import Scaler
from training.network import Internals
from training.optim import LossFunction
from training.spec import Loss, Task

EVAL_CHUNK = 8192  # examples per forward pass when evaluating: bounds the memory of large splits
CPU_EVAL_CHUNK = 1024  # on a CPU, activations of smaller chunks stay in cache: a 10-20% faster pass
CPU_STACKED_EVAL_CHUNK = 4096  # a replica group's pass on a CPU, all replicas' rows: ~15% faster than 8192
PENDING_OUTPUTS = 2**19  # output elements kept before their correct predictions are counted (2 MiB)
TRAIN_SAMPLE = 10_000  # training rows that eval-mode train_loss is measured on (fixed per run)


def in_original_units(loss_fn: LossFunction, targets: Scaler | None) -> LossFunction:
    """The loss as reported: on regression targets mapped back to their original units."""
    if targets is None:
        return loss_fn
    return lambda out, y: loss_fn(targets.invert(out), targets.invert(y))


class EpochSums:
    """One training epoch's per-step numbers, kept on the device as they come and reduced at its end.

    A step only appends tensors it already has: no kernel per step, no sync.
    """

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.losses: list[torch.Tensor] = []  # each step's mean data loss
        self.sizes: list[int] = []  # each step's examples
        self.outputs: list[torch.Tensor] = []  # classifiers: the latest steps' outputs ...
        self.targets: list[torch.Tensor] = []  # ... and true classes, until counted
        self.pending = 0  # elements in self.outputs
        self.correct: list[torch.Tensor] = []  # correct predictions of the steps counted so far
        self.norms: list[list[torch.Tensor]] = []  # per step: parts whose joint L2 norm is the global norm
        self.clipped: list[torch.Tensor] = []
        self.examples = self.steps = 0

    def add_batch(self, data_loss: torch.Tensor, out: torch.Tensor, y: torch.Tensor, classify: bool) -> None:
        """One step's loss (weighted by its examples) and, for classifiers, its outputs to count."""
        self.losses.append(data_loss.detach())
        self.sizes.append(len(y))
        if classify:
            self.outputs.append(out.detach())
            self.targets.append(y)
            self.pending += out.numel()
            if self.pending >= PENDING_OUTPUTS:
                self._count()
        self.examples += len(y)
        self.steps += 1

    def _count(self) -> None:
        """Count the correct predictions of the kept outputs (many steps in a few kernels) and drop them."""
        predicted = torch.cat(self.outputs).argmax(dim=1)
        self.correct.append((predicted == torch.cat(self.targets)).sum())
        self.outputs, self.targets, self.pending = [], [], 0

    def add_grad_norm(self, norm: torch.Tensor | None, clipped: torch.Tensor | None) -> None:
        """A pre-clip global gradient norm, and whether clipping acted on the step."""
        if norm is not None:
            self.add_norm_parts([norm])
        if clipped is not None:
            self.clipped.append(clipped)

    def add_norm_parts(self, parts: list[torch.Tensor]) -> None:
        """A step's pre-clip global gradient norm as the per-tensor norms it is the L2 norm of."""
        self.norms.append(parts or [torch.zeros((), device=self.device)])  # no gradients: a norm of 0

    def _step_norms(self) -> torch.Tensor:
        """Each step's global gradient norm, from its parts."""
        widths = {len(parts) for parts in self.norms}
        if len(widths) == 1:  # the usual case: the same parameters had gradients on every step
            flat = torch.stack([part.float() for parts in self.norms for part in parts])
            return torch.linalg.vector_norm(flat.view(len(self.norms), -1), dim=1)
        return torch.stack([torch.linalg.vector_norm(torch.stack(parts).float()) for parts in self.norms])

    def means(self) -> dict[str, torch.Tensor]:
        """Per-example and per-step means, still on the device."""
        zero = torch.zeros((), device=self.device)
        examples, steps = max(self.examples, 1), max(self.steps, 1)
        loss, correct, norm, norm_max, clipped = zero, zero, zero, zero, zero
        if self.losses:
            sizes = torch.tensor(self.sizes, dtype=torch.float32, device=self.device)
            loss = torch.dot(torch.stack(self.losses).float(), sizes) / examples
        if self.outputs:
            self._count()
        if self.correct:
            correct = torch.stack(self.correct).sum() / examples
        if self.norms:
            norms = self._step_norms()
            norm, norm_max = norms.mean(), norms.max()
        if self.clipped:
            clipped = torch.stack(self.clipped).float().sum() / steps
        return {
            "loss": loss,
            "correct": correct,
            "grad_norm": norm,
            "grad_norm_max": norm_max,
            "clipped": clipped,
        }


@torch.inference_mode()
def evaluate(
    model: nn.Module,
    X: torch.Tensor,
    y: torch.Tensor,
    loss_fn: LossFunction,
    task: Task,
    observe: Callable[[Internals], None] | None = None,
) -> dict[str, torch.Tensor]:
    """Mean loss and share of correct predictions (classification) on a split, in eval mode, on the device.

    `observe`, when given, sees what each hidden layer computed on every chunk.
    """
    model.eval()
    loss_sum = torch.zeros((), device=X.device)
    correct = torch.zeros((), device=X.device)
    chunk = CPU_EVAL_CHUNK if X.device.type == "cpu" else EVAL_CHUNK
    for start in range(0, len(X), chunk):
        xb, yb = X[start : start + chunk], y[start : start + chunk]
        internals: Internals | None = {} if observe is not None else None
        out = model(xb, internals)
        if observe is not None and internals is not None:
            observe(internals)
        loss_sum += loss_fn(out, yb) * len(xb)
        if task == Task.classification:
            correct += (out.argmax(dim=1) == yb).sum()
    count = max(len(X), 1)
    return {"loss": loss_sum / count, "correct": correct / count}


def split_metrics(
    split: str, task: Task, loss_kind: Loss, loss: float | None, correct: float | None
) -> dict[str, float | None]:
    """loss plus accuracy (classification) or rmse (regression, unless trained on cross-entropy)."""
    if task == Task.classification:
        return {f"{split}_loss": loss, f"{split}_accuracy": correct}
    rmse = math.sqrt(loss) if loss is not None and loss_kind != Loss.cross_entropy else None
    return {f"{split}_loss": loss, f"{split}_rmse": rmse}
