"""Where a run trains, what ends it with a reason a person can act on, and paying torch's start-up costs."""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from training.optim import build_optimizer
from training.spec import Adam


class JobFailure(RuntimeError):
    """A failure the user can act on: the run ends `failed` with this message instead of a traceback."""


class TrainingDiverged(JobFailure):
    """The loss became NaN or infinite."""

    def __init__(self, loss: float | None, epoch: int, learning_rate: float) -> None:
        super().__init__(
            f"the training loss became {loss} at epoch {epoch}: the steps are too large for this network. "
            f"Try a lower optimizer.learning_rate (now {learning_rate:g}), gradient clipping "
            "(clipping.max_norm: 1.0), or normalized inputs (normalization.inputs: zscore)"
        )


def resolve_device(name: str) -> torch.device:
    """auto -> cuda when available, else cpu."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise JobFailure(f"device {name!r} was asked for but CUDA is not available on this machine: use auto")
    return torch.device(name)


def warm_up() -> None:
    """Pay torch's one-time costs (import, kernels, optimizer construction) before the first job."""
    model = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 3))
    optimizer = build_optimizer(Adam(), list(model.parameters()))
    loss = F.cross_entropy(model(torch.randn(16, 4)), torch.randint(0, 3, (16,)))
    loss.backward()
    optimizer.step()
