"""Optimizer, learning-rate schedule, L2 penalty and gradient clipping."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from training.spec import (
    SGD,
    Adagrad,
    Adam,
    AdamW,
    Clipping,
    CosineSchedule,
    Momentum,
    Nesterov,
    NormClipping,
    Optimizer,
    PlateauSchedule,
    RMSprop,
    StepSchedule,
    ValueClipping,
)

Params = Sequence[nn.Parameter]


def _fast_kwargs(cls: Any) -> dict[str, Any]:
    """Fused kernels where this torch has them for the optimizer (one kernel per step), else foreach."""
    try:
        cls([nn.Parameter(torch.zeros(1))], lr=0.1, fused=True)
        return {"fused": True}
    except (RuntimeError, TypeError, ValueError):
        return {"foreach": True}


def build_optimizer(spec: Optimizer, params: Params) -> torch.optim.Optimizer:
    """The torch optimizer a spec names; L2 is not folded in here (it is a term of the loss)."""
    lr = spec.learning_rate
    match spec:
        case SGD():
            return torch.optim.SGD(params, lr=lr, **_fast_kwargs(torch.optim.SGD))
        case Momentum(momentum=momentum):
            return torch.optim.SGD(params, lr=lr, momentum=momentum, **_fast_kwargs(torch.optim.SGD))
        case Nesterov(momentum=momentum):
            kwargs = _fast_kwargs(torch.optim.SGD)
            return torch.optim.SGD(params, lr=lr, momentum=momentum, nesterov=True, **kwargs)
        case Adam(betas=betas, eps=eps):
            return torch.optim.Adam(params, lr=lr, betas=betas, eps=eps, **_fast_kwargs(torch.optim.Adam))
        case AdamW(betas=betas, eps=eps, weight_decay=decay):
            kwargs = _fast_kwargs(torch.optim.AdamW)
            return torch.optim.AdamW(params, lr=lr, betas=betas, eps=eps, weight_decay=decay, **kwargs)
        case RMSprop(alpha=alpha, eps=eps, momentum=momentum):
            return torch.optim.RMSprop(params, lr=lr, alpha=alpha, eps=eps, momentum=momentum, foreach=True)
        case Adagrad(eps=eps):
            return torch.optim.Adagrad(params, lr=lr, eps=eps, **_fast_kwargs(torch.optim.Adagrad))
    raise ValueError(f"unsupported optimizer {spec!r}")


Scheduler = torch.optim.lr_scheduler.LRScheduler | torch.optim.lr_scheduler.ReduceLROnPlateau


def build_scheduler(spec: Optimizer, optimizer: torch.optim.Optimizer, epochs: int) -> Scheduler | None:
    """The per-epoch learning-rate schedule, if any."""
    match spec.schedule:
        case None:
            return None
        case StepSchedule(step_size=step_size, gamma=gamma):
            return torch.optim.lr_scheduler.StepLR(optimizer, step_size=step_size, gamma=gamma)
        case CosineSchedule(min_learning_rate=low):
            # T_max = epochs - 1: the last epoch trains at min_learning_rate, as the spec documents
            # (with T_max = epochs the minimum would only be reached after the run has ended)
            return torch.optim.lr_scheduler.CosineAnnealingLR(
                optimizer, T_max=max(epochs - 1, 1), eta_min=low
            )
        case PlateauSchedule(factor=factor, patience=patience, min_learning_rate=low):
            return torch.optim.lr_scheduler.ReduceLROnPlateau(
                optimizer, factor=factor, patience=patience, min_lr=low
            )
    raise ValueError(f"unsupported schedule {spec.schedule!r}")


def l2_penalty(weights: Sequence[torch.Tensor], l2: float) -> torch.Tensor:
    """λ·Σ w² over the given weight matrices (the chapter's regularized performance index)."""
    return l2 * torch.stack([weight.pow(2).sum() for weight in weights]).sum()


def global_grad_norm(params: Params) -> torch.Tensor:
    """L2 norm of all gradients together, as a tensor (no host sync)."""
    grads = [p.grad for p in params if p.grad is not None]
    if not grads:
        return torch.zeros(())
    return torch.linalg.vector_norm(torch.stack(torch._foreach_norm(grads)))


def clip_gradients(
    clipping: Clipping | None, params: Params
) -> tuple[torch.Tensor | None, torch.Tensor | None]:
    """Clip in place; returns (pre-clip global norm, whether clipping acted) as tensors, or Nones."""
    match clipping:
        case NormClipping(max_norm=max_norm):
            norm = torch.nn.utils.clip_grad_norm_(params, max_norm, foreach=True)
            return norm, norm > max_norm
        case ValueClipping(max_value=max_value):
            norm = global_grad_norm(params)
            grads = [p.grad for p in params if p.grad is not None]
            acted = torch.stack(torch._foreach_norm(grads, float("inf"))).max() > max_value
            torch.nn.utils.clip_grad_value_(params, max_value, foreach=True)
            return norm, acted
    return None, None
