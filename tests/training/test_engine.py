"""The loop's fast paths compute what the plain ones do: batches, epoch sums, per-step gradient norms,
the optimizer step."""

from __future__ import annotations

import warnings
from collections.abc import Callable
from typing import Any

import pytest
import torch

from tests.training.conftest import make_spec
from training import loop, metrics, optim
from training.group import fit_group
from training.loop import shuffled_batches
from training.metrics import EpochSums
from training.optim import backward, step_optimizer


@pytest.mark.parametrize("block_bytes", [1, 3000, 2**20])
@pytest.mark.parametrize("steps", [7, 6])  # 6: the last (partial) batch dropped
def test_shuffled_batches_are_the_rows_of_each_batch_slice_of_the_order(
    block_bytes: int, steps: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(loop, "GATHER_BYTES", block_bytes)  # one batch, a few, or the whole epoch a block
    X, y = torch.randn(100, 3), torch.arange(100)
    order = torch.randperm(100, generator=torch.Generator().manual_seed(0))
    batches = list(shuffled_batches(X, y, order, 16, steps))
    assert len(batches) == steps
    for step, (xb, yb) in enumerate(batches):
        index = order[step * 16 : (step + 1) * 16]
        assert torch.equal(xb, X[index]) and torch.equal(yb, y[index])


def test_epoch_sums_match_sums_taken_step_by_step(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(metrics, "PENDING_OUTPUTS", 50)  # count correct predictions every few steps
    generator = torch.Generator().manual_seed(1)
    sums = EpochSums(torch.device("cpu"))
    loss_sum = correct = 0.0
    norms: list[float] = []
    for size in [16, 16, 16, 5]:
        out, y = torch.randn(size, 4, generator=generator), torch.randint(0, 4, (size,), generator=generator)
        loss = torch.nn.functional.cross_entropy(out, y)
        grads = [torch.randn(3, 3, generator=generator), torch.randn(3, generator=generator)]
        sums.add_batch(loss, out, y, classify=True)
        sums.add_norm_parts(list(torch._foreach_norm(grads)))
        loss_sum += loss.item() * size
        correct += (out.argmax(dim=1) == y).sum().item()
        norms.append(torch.cat([g.flatten() for g in grads]).norm().item())
    means = sums.means()
    assert means["loss"].item() == pytest.approx(loss_sum / 53, rel=1e-6)
    assert means["correct"].item() == pytest.approx(correct / 53, rel=1e-6)
    assert means["grad_norm"].item() == pytest.approx(sum(norms) / 4, rel=1e-6)
    assert means["grad_norm_max"].item() == pytest.approx(max(norms), rel=1e-6)


def test_epoch_sums_take_global_norms_of_steps_with_different_numbers_of_gradients() -> None:
    sums = EpochSums(torch.device("cpu"))
    sums.add_norm_parts([torch.tensor(3.0), torch.tensor(4.0)])
    sums.add_norm_parts([torch.tensor(12.0)])  # a parameter without a gradient on this step
    sums.add_grad_norm(torch.tensor(2.0), torch.tensor(True))  # a clipped step's own global norm
    means = sums.means()
    assert means["grad_norm"].item() == pytest.approx((5 + 12 + 2) / 3)
    assert means["grad_norm_max"].item() == pytest.approx(12)


def _twin_optimizers(
    kind: Callable[..., torch.optim.Optimizer], **settings: Any
) -> list[torch.optim.Optimizer]:
    """Two optimizers over equal parameters (two groups, a matrix and a vector each)."""
    twins = []
    for _ in range(2):
        generator = torch.Generator().manual_seed(0)
        params = [torch.nn.Parameter(torch.randn(shape, generator=generator)) for shape in [(5, 3), (3,)] * 2]
        groups: list[dict[str, Any]] = [{"params": params[:2]}, {"params": params[2:], "weight_decay": 0.0}]
        twins.append(kind(groups, lr=0.01, fused=True, **settings))
    return twins


ADAM_SETTINGS = [{}, {"amsgrad": True}, {"weight_decay": 0.1, "maximize": True}]
SGD_SETTINGS = [
    {},
    {"momentum": 0.9},
    {"momentum": 0.9, "nesterov": True, "weight_decay": 0.1},
    {"momentum": 0.5, "dampening": 0.1, "maximize": True},
]
OPTIMIZERS = [
    *[(torch.optim.Adam, s) for s in ADAM_SETTINGS],
    *[(torch.optim.AdamW, s) for s in ADAM_SETTINGS],
    *[(torch.optim.SGD, s) for s in SGD_SETTINGS],
]


@pytest.mark.parametrize(("kind", "settings"), OPTIMIZERS)
def test_the_direct_fused_step_is_the_optimizers_own(
    kind: Callable[..., torch.optim.Optimizer], settings: dict
) -> None:
    """The same kernels on the same tensors: bit-identical parameters and state, the lr changing per step."""
    direct, stepped = _twin_optimizers(kind, **settings)
    generator = torch.Generator().manual_seed(1)
    for step in range(6):
        for a, b in zip(direct.param_groups, stepped.param_groups, strict=True):
            a["lr"] = b["lr"] = 0.01 * 0.7**step  # a schedule changes it between steps
        grads = [torch.randn(p.shape, generator=generator) for g in direct.param_groups for p in g["params"]]
        for optimizer in (direct, stepped):
            for p, grad in zip([p for g in optimizer.param_groups for p in g["params"]], grads, strict=True):
                p.grad = grad.clone()
        if step > 0:  # the first step creates the state: torch's own step() takes it
            assert optim.fused_calls(direct) is not None
        step_optimizer(direct)
        stepped.step()
    for a, b in zip(direct.param_groups, stepped.param_groups, strict=True):
        for p, q in zip(a["params"], b["params"], strict=True):
            assert torch.equal(p, q)
    ours, theirs = direct.state_dict(), stepped.state_dict()
    assert ours["param_groups"] == theirs["param_groups"]
    for index, state in theirs["state"].items():
        assert state.keys() == ours["state"][index].keys()
        for key, value in state.items():
            assert torch.equal(ours["state"][index][key], value), key


def test_the_optimizers_own_step_runs_where_the_direct_one_does_not_apply() -> None:
    optimizer = _twin_optimizers(torch.optim.Adam)[0]
    params = [p for g in optimizer.param_groups for p in g["params"]]
    for p in params:
        p.grad = torch.ones_like(p)
    assert optim.fused_calls(optimizer) is None  # no state yet
    optimizer.step()
    assert optim.fused_calls(optimizer) is not None
    params[1].grad = None  # torch's step skips it
    assert optim.fused_calls(optimizer) is None
    params[1].grad = torch.ones_like(params[1])
    calls: list[int] = []
    handle = optimizer.register_step_post_hook(lambda *_: calls.append(1))
    assert optim.fused_calls(optimizer) is None
    step_optimizer(optimizer)
    assert calls == [1]
    handle.remove()
    optimizer.step = lambda *_: None  # type: ignore[method-assign,assignment]  # replaced, as tests do to watch it
    assert optim.fused_calls(optimizer) is None


def test_a_schedule_sees_the_direct_step() -> None:
    optimizer = _twin_optimizers(torch.optim.Adam)[0]
    scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=1, gamma=0.5)
    for p in (p for g in optimizer.param_groups for p in g["params"]):
        p.grad = torch.ones_like(p)
    optimizer.step()  # creates the state
    optimizer._opt_called = False  # type: ignore[attr-defined]
    step_optimizer(optimizer)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # "lr_scheduler.step() before optimizer.step()" would raise
        scheduler.step()
    assert optimizer.param_groups[0]["lr"] == 0.005


def test_a_replica_groups_schedules_see_their_optimizers_step() -> None:
    schedule = {"name": "adam", "schedule": {"type": "step", "step_size": 1}}
    specs = [make_spec(optimizer=schedule, training={"epochs": 2, "seed": seed}) for seed in range(2)]
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # "lr_scheduler.step() before optimizer.step()" would raise
        results = fit_group(specs)
    assert [r.status for r in results] == ["succeeded", "succeeded"]


def test_backward_gives_the_gradients_of_torchs_backward() -> None:
    """The same engine on the same graph: bit-identical gradients, an input's included."""
    first = torch.nn.Linear(4, 8)
    model = torch.nn.Sequential(first, torch.nn.Tanh(), torch.nn.Linear(8, 3))
    generator = torch.Generator().manual_seed(0)
    x, y = torch.randn(16, 4, generator=generator), torch.randint(0, 3, (16,), generator=generator)
    grads = []
    for run in (backward, torch.Tensor.backward):
        model.zero_grad(set_to_none=True)
        inputs = x.clone().requires_grad_(True)  # as diagnostics watch a sequence's inputs
        run(torch.nn.functional.cross_entropy(model(inputs), y) + first.weight.pow(2).sum())
        grads.append([inputs.grad, *(p.grad for p in model.parameters())])
    for ours, theirs in zip(*grads, strict=True):
        assert ours is not None and theirs is not None and torch.equal(ours, theirs)
    with pytest.raises(RuntimeError, match="only for scalar outputs"):
        backward(model(x))  # a vector has no implicit seed, as with Tensor.backward
