"""Where a run trains, what ends it with a reason a person can act on, and paying torch's start-up costs."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable

import torch
from torch import nn
from torch.nn import functional as F

from training.optim import build_optimizer
from training.spec import Adam, Precision


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


Autocast = Callable[[], contextlib.AbstractContextManager[object]]


def precision_context(precision: Precision, device: torch.device) -> Autocast:
    """What forward passes run under: bfloat16 autocast for "bf16", nothing for "32"."""
    if precision == Precision.float32:
        return contextlib.nullcontext
    if device.type == "cuda" and not torch.cuda.is_bf16_supported():
        name = torch.cuda.get_device_name(device)
        raise JobFailure(
            f'training.precision "bf16" needs a GPU with bfloat16 support; {name} has none: use "32"'
        )
    return lambda: torch.autocast(device.type, dtype=torch.bfloat16)


def make_deterministic() -> None:
    """CUDA kernels that give the same result every run, so a resumed job equals an uninterrupted one.

    cuBLAS reads CUBLAS_WORKSPACE_CONFIG when it starts: call this before the first CUDA work.
    """
    if not torch.cuda.is_available():
        return
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    torch.use_deterministic_algorithms(True)
    torch.backends.cudnn.benchmark = False


def release_memory(failure: BaseException) -> None:
    """After a CUDA out-of-memory failure, hand the cached blocks back so the next job starts clean."""
    if isinstance(failure, torch.OutOfMemoryError) and torch.cuda.is_available():
        torch.cuda.empty_cache()


def warm_up() -> None:
    """Pay torch's one-time costs (import, kernels, optimizer construction) before the first job."""
    model = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 3))
    optimizer = build_optimizer(Adam(), list(model.parameters()))
    loss = F.cross_entropy(model(torch.randn(16, 4)), torch.randint(0, 3, (16,)))
    loss.backward()
    optimizer.step()
