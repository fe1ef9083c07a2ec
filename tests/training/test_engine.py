"""The loop's fast paths compute what the plain ones do: batches, epoch sums, per-step gradient norms."""

from __future__ import annotations

import pytest
import torch

from training import loop, metrics
from training.loop import shuffled_batches
from training.metrics import EpochSums


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
