"""The objective and its descent: loss function, optimizer, learning-rate schedule, L2 penalty, clipping."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from functools import partial
from typing import Any, cast

import torch
from torch import nn
from torch.nn import functional as F
from torch.optim import optimizer as torch_optimizer

from training.records import EpochRecord
from training.spec import (
    SGD,
    Adagrad,
    Adam,
    AdamW,
    Clipping,
    CosineSchedule,
    JobSpec,
    Loss,
    Momentum,
    Nesterov,
    NormClipping,
    Optimizer,
    PlateauSchedule,
    RMSprop,
    StepSchedule,
    Task,
    ValueClipping,
)
from training.tabular import DatasetError

Params = Sequence[nn.Parameter]
LossFunction = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def loss_function(spec: JobSpec, task: Task) -> LossFunction:
    """Cross-entropy for classification and MSE for regression, unless training.loss says otherwise."""
    loss = spec.training.loss
    if loss == Loss.auto:
        loss = Loss.cross_entropy if task == Task.classification else Loss.mse
    if loss == Loss.cross_entropy:
        if task != Task.classification:
            raise DatasetError(
                "cross_entropy needs a classification dataset; this one is regression: use mse"
            )
        return F.cross_entropy
    if task == Task.classification:
        return lambda out, y: F.mse_loss(torch.softmax(out, dim=1), F.one_hot(y, out.shape[1]).to(out.dtype))
    return F.mse_loss


def _fast_kwargs(cls: Any) -> dict[str, Any]:
    """Fused kernels where this torch has them for the optimizer (one kernel per step), else foreach."""
    try:
        cls([nn.Parameter(torch.zeros(1))], lr=0.1, fused=True)
        return {"fused": True}
    except (RuntimeError, TypeError, ValueError):
        return {"foreach": True}


def decay_groups(params: Params, weights: Sequence[torch.Tensor], decay: float) -> list[dict[str, Any]]:
    """Parameter groups that decay the weight matrices only: the same set the L2 penalty covers."""
    decayed = {id(w) for w in weights}
    groups = [
        {"params": [p for p in params if id(p) in decayed], "weight_decay": decay},
        {"params": [p for p in params if id(p) not in decayed], "weight_decay": 0.0},
    ]
    return [group for group in groups if group["params"]]


def build_optimizer(
    spec: Optimizer, params: Params, weights: Sequence[torch.Tensor] | None = None
) -> torch.optim.Optimizer:
    """The torch optimizer a spec names; L2 is not folded in here (it is a term of the loss).

    AdamW decays `weights` (default: every parameter) and leaves biases and normalization gains alone.
    """
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
            groups = decay_groups(params, params if weights is None else weights, decay)
            kwargs = _fast_kwargs(torch.optim.AdamW)
            return torch.optim.AdamW(groups, lr=lr, betas=betas, eps=eps, **kwargs)
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


def stretch_schedule(scheduler: Scheduler | None, epochs: int) -> None:
    """A resumed run with more (or fewer) epochs: cosine follows the curve of the new horizon from here.

    The restored scheduler still has the old run's T_max, whose curve would climb back up after it ends.
    """
    if not isinstance(scheduler, torch.optim.lr_scheduler.CosineAnnealingLR):
        return  # step and plateau schedules do not depend on the number of epochs
    horizon = max(epochs - 1, 1)
    if scheduler.T_max == horizon:
        return
    scheduler.T_max = horizon
    share = (1 + math.cos(math.pi * scheduler.last_epoch / horizon)) / 2
    low = scheduler.eta_min
    for group, base in zip(scheduler.optimizer.param_groups, scheduler.base_lrs, strict=True):
        group["lr"] = low + (base - low) * share
    scheduler._last_lr = [group["lr"] for group in scheduler.optimizer.param_groups]


def step_scheduler(scheduler: Scheduler | None, record: EpochRecord) -> None:
    """Advance the schedule after an epoch; plateau watches val_loss (train_loss without validation)."""
    if isinstance(scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau):
        watched = record.val_loss if record.val_loss is not None else record.train_loss
        assert watched is not None  # every record the loop keeps has a finite training loss
        scheduler.step(watched)
    elif scheduler is not None:
        scheduler.step()


def l2_penalty(weights: Sequence[torch.Tensor], l2: float) -> torch.Tensor:
    """λ·Σ w² over the given weight matrices (the chapter's regularized performance index)."""
    return l2 * torch.stack([weight.pow(2).sum() for weight in weights]).sum()


def grad_norms(params: Params) -> list[torch.Tensor]:
    """The L2 norm of each gradient (one foreach call, no host sync); their joint norm is the global one."""
    grads = [p.grad for p in params if p.grad is not None]
    return list(torch._foreach_norm(grads)) if grads else []


def global_grad_norm(params: Params) -> torch.Tensor:
    """L2 norm of all gradients together, as a tensor (no host sync)."""
    norms = grad_norms(params)
    return torch.linalg.vector_norm(torch.stack(norms)) if norms else torch.zeros(())


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


Call = Callable[[], object]


def backward(objective: torch.Tensor) -> None:
    """objective.backward(); on a CPU, the autograd engine called directly with the scalar's seed of 1.

    That skips backward()'s Python checks around the same engine call (~40 µs a step, 3% of a small MLP's
    step). backward() runs itself for a vector (it refuses to seed one) and off the CPU (there it also hands
    Python's context to the engine's device threads).
    """
    if objective.dim() != 0 or objective.device.type != "cpu":
        objective.backward()
        return
    seed = (torch.ones_like(objective, memory_format=torch.preserve_format),)
    torch.autograd.Variable._execution_engine.run_backward(
        (objective,), seed, False, False, (), allow_unreachable=True, accumulate_grad=True
    )


def step_optimizer(optimizer: torch.optim.Optimizer) -> None:
    """optimizer.step(); a fused Adam, AdamW or SGD calls its kernels directly (see fused_calls)."""
    calls = fused_calls(optimizer)
    if calls is None:
        optimizer.step()
        return
    run_calls(calls)
    optimizer._opt_called = True  # type: ignore[attr-defined]  # what a scheduler's wrapper of step() notes


def run_calls(calls: list[Call]) -> None:
    """Make an optimizer step's kernel calls (fused_calls)."""
    with torch.no_grad():
        for call in calls:
            call()


def fused_calls(optimizer: torch.optim.Optimizer) -> list[Call] | None:
    """The kernel calls a fused optimizer's step() makes, on its own state tensors and with its settings
    as they are now (schedules change lr); None where step() must run itself.

    step() spends ~60 µs a step on its wrapper, hooks and lists around these calls (~5% of a small MLP's
    step). It runs itself for what this does not do: other optimizers, a first step (it creates the
    state), a parameter without a gradient, hooks, a step() replaced on the instance, grad scaling,
    tensor settings.
    """
    kind = type(optimizer)
    if kind not in (torch.optim.Adam, torch.optim.AdamW, torch.optim.SGD) or (
        optimizer._optimizer_step_pre_hooks
        or optimizer._optimizer_step_post_hooks
        or torch_optimizer._global_optimizer_pre_hooks
        or torch_optimizer._global_optimizer_post_hooks
        or getattr(optimizer, "grad_scale", None) is not None
        or getattr(optimizer, "found_inf", None) is not None
    ):
        return None
    replaced = optimizer.__dict__.get("step")  # a scheduler wraps step() only to note that it ran
    if replaced is not None and not hasattr(replaced, "_wrapped_by_lr_sched"):
        return None
    if kind is torch.optim.SGD and getattr(optimizer, "_need_device_dtype_check_for_fused", True):
        return None  # SGD's first step checks that the kernel supports the parameters' device and dtype
    calls: list[Call] = []
    for group in optimizer.param_groups:
        if not group["fused"] or group["differentiable"] or group.get("capturable"):
            return None
        params: list[torch.Tensor] = group["params"]
        grads: list[torch.Tensor] = []
        for param in params:
            if param.grad is None or param.grad.is_sparse:
                return None
            grads.append(param.grad)
        build = _sgd_calls if kind is torch.optim.SGD else _adam_calls
        group_calls = build(group, params, grads, [optimizer.state.get(p) for p in params])
        if group_calls is None:
            return None
        calls.extend(group_calls)
    return calls


def _by_device(lists: list[list[Any]]) -> list[list[list[torch.Tensor]]]:
    """The lists split by device and dtype, as step() splits them (one kernel call each)."""
    grouped = torch.optim.Optimizer._group_tensors_by_device_and_dtype(lists)
    return [cast(list[list[torch.Tensor]], same) for same, _ in grouped.values()]


def _adam_calls(
    group: dict[str, Any], params: list[torch.Tensor], grads: list[torch.Tensor], states: list[Any]
) -> list[Call] | None:
    """Adam's and AdamW's calls for one parameter group: count the step, then the fused update."""
    lr, (beta1, beta2) = group["lr"], group["betas"]
    if not all(states) or any(isinstance(value, torch.Tensor) for value in (lr, beta1, beta2)):
        return None  # a first step creates the state
    amsgrad = group["amsgrad"]
    lists = [
        params,
        grads,
        [s["exp_avg"] for s in states],
        [s["exp_avg_sq"] for s in states],
        [s["max_exp_avg_sq"] for s in states] if amsgrad else [],
        [s["step"] for s in states],
    ]
    kernel = torch._fused_adamw_ if group["decoupled_weight_decay"] else torch._fused_adam_
    settings = {
        "amsgrad": amsgrad,
        "lr": lr,
        "beta1": beta1,
        "beta2": beta2,
        "weight_decay": group["weight_decay"],
        "eps": group["eps"],
        "maximize": group["maximize"],
        "grad_scale": None,
        "found_inf": None,
    }
    calls: list[Call] = []
    for same in _by_device(lists):
        calls += [partial(torch._foreach_add_, same[5], 1), partial(kernel, *same, **settings)]
    return calls


def _sgd_calls(
    group: dict[str, Any], params: list[torch.Tensor], grads: list[torch.Tensor], states: list[Any]
) -> list[Call] | None:
    """SGD's call for one parameter group (with momentum, once the first step has made the buffers)."""
    lr, momentum = group["lr"], group["momentum"]
    buffers: list[Any] = [s.get("momentum_buffer") if s else None for s in states] if momentum != 0 else []
    if isinstance(lr, torch.Tensor) or any(b is None for b in buffers):
        return None
    settings = {
        "weight_decay": group["weight_decay"],
        "momentum": momentum,
        "lr": lr,
        "dampening": group["dampening"],
        "nesterov": group["nesterov"],
        "maximize": group["maximize"],
        "is_first_step": False,
        "grad_scale": None,
        "found_inf": None,
    }
    return [partial(torch._fused_sgd_, *same, **settings) for same in _by_device([params, grads, buffers])]
