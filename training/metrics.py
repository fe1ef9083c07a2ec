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
TRAIN_SAMPLE = 10_000  # training rows that eval-mode train_loss is measured on (fixed per run)


def in_original_units(loss_fn: LossFunction, targets: Scaler | None) -> LossFunction:
    """The loss as reported: on regression targets mapped back to their original units."""
    if targets is None:
        return loss_fn
    return lambda out, y: loss_fn(targets.invert(out), targets.invert(y))


class EpochSums:
    """The running sums of one training epoch, kept on the device and read once at its end."""

    def __init__(self, device: torch.device) -> None:
        zero = torch.zeros((), device=device)
        self.loss, self.correct, self.clipped = zero.clone(), zero.clone(), zero.clone()
        self.grad_norm, self.grad_norm_max = zero.clone(), zero.clone()
        self.examples = self.steps = self.grad_norms = 0

    def add_batch(self, data_loss: torch.Tensor, out: torch.Tensor, y: torch.Tensor, classify: bool) -> None:
        """One step's loss (weighted by its examples) and, for classifiers, its correct predictions."""
        self.loss += data_loss.detach() * len(y)
        if classify:
            self.correct += (out.argmax(dim=1) == y).sum()
        self.examples += len(y)
        self.steps += 1

    def add_grad_norm(self, norm: torch.Tensor | None, clipped: torch.Tensor | None) -> None:
        """A pre-clip global gradient norm, and whether clipping acted on the step."""
        if norm is not None:
            self.grad_norm += norm
            self.grad_norm_max = torch.maximum(self.grad_norm_max, norm)
            self.grad_norms += 1
        if clipped is not None:
            self.clipped += clipped

    def means(self) -> dict[str, torch.Tensor]:
        """Per-example and per-step means, still on the device."""
        return {
            "loss": self.loss / self.examples,
            "correct": self.correct / self.examples,
            "grad_norm": self.grad_norm / max(self.grad_norms, 1),
            "grad_norm_max": self.grad_norm_max,
            "clipped": self.clipped / self.steps,
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
    for start in range(0, len(X), EVAL_CHUNK):
        xb, yb = X[start : start + EVAL_CHUNK], y[start : start + EVAL_CHUNK]
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
