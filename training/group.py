"""fit_group(): the jobs of one configuration that differ only in their seed, trained as one stacked model.

Each replica is the job it replaces: its own Trainer (data split, initialization, batch order, optimizer,
schedule, early stopping, diagnostics, checkpoints, callbacks) as fit() builds it; only the steps run
together (training/stacked.py). A replica's dropout masks come from its own generator, which holds the
stream a job alone would draw from torch's global generator (and is saved as such in its checkpoints).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch

from training.callbacks import Callback
from training.grouping import can_stack, replica_key
from training.loop import FAILURES, Trainer, failed_result, write_result
from training.metrics import EpochSums
from training.network import Internals
from training.records import EpochRecord, RunResult
from training.spec import JobSpec
from training.stacked import DropoutMasks, JointOptimizers, StackedNetwork


@dataclass(eq=False)
class Replica:
    """One job of the group: its trainer, its dropout stream, and its result once it has ended."""

    trainer: Trainer
    cpu_rng: torch.Tensor  # torch's global CPU generator state the job alone would have
    dropout: torch.Generator  # the generator its dropout masks come from (the device's own stream)
    started: float = field(default_factory=time.perf_counter)
    sums: EpochSums | None = None
    order: torch.Tensor | None = None
    result: RunResult | None = None

    @classmethod
    def capture(cls, trainer: Trainer) -> Replica:
        """Take over the random stream the trainer's job would continue drawing from, as fit() leaves it."""
        device = trainer.device
        generator = torch.Generator(device=device)
        if device.type == "cuda":
            generator.set_state(torch.cuda.get_rng_state(device))
        else:
            generator.set_state(torch.get_rng_state())
        return cls(trainer=trainer, cpu_rng=torch.get_rng_state(), dropout=generator)

    def make_global(self) -> None:
        """Put this replica's stream into torch's global generators (checkpoints save it from there)."""
        torch.set_rng_state(self.cpu_rng)
        if self.trainer.device.type == "cuda":
            torch.cuda.set_rng_state(self.dropout.get_state(), self.trainer.device)
        else:
            torch.set_rng_state(self.dropout.get_state())

    def end(self, result: RunResult) -> None:
        """The replica's run is over."""
        self.result = result


class Stack:
    """The replicas training in this epoch, as one stacked model over their stacked training data."""

    def __init__(self, members: Sequence[Replica]) -> None:
        self.members = list(members)
        trainers = [m.trainer for m in self.members]
        self.X = torch.stack([t.data.X_train for t in trainers])
        self.y = torch.stack([t.data.y_train for t in trainers])
        self.orders = torch.stack([m.order for m in self.members if m.order is not None])
        self.rows = torch.arange(len(self.members), device=self.X.device).unsqueeze(1)
        self.network = StackedNetwork([t.model for t in trainers])
        self.masks = DropoutMasks([m.dropout for m in self.members])
        self.optimizers = JointOptimizers([t.optimizer for t in trainers])

    def step(self, step: int, batch: int) -> None:
        """One gradient step of every replica: forward and backward together, then each one's own update."""
        index = self.orders[:, step * batch : (step + 1) * batch]
        xb, yb = self.X[self.rows, index], self.y[self.rows, index]
        trainers = [m.trainer for m in self.members]
        internals: list[Internals | None] = [
            t.diagnostics.watch(step, xb[r])[1] for r, t in enumerate(trainers)
        ]
        sampled = [found for found in internals if found is not None]
        watch_inputs = bool(sampled) and trainers[0].diagnostics.sequences
        if watch_inputs:  # to see how far back in time the error signal reaches, as a job alone does
            xb = xb.detach().requires_grad_(True)
        with trainers[0].precision():
            out = self.network(xb, self.masks, sampled if len(sampled) == len(trainers) else None)
            data_losses = [t.loss_fn(out[r], yb[r]) for r, t in enumerate(trainers)]
        self.optimizers.zero_grad()
        objectives = [t.objective(loss) for t, loss in zip(trainers, data_losses, strict=True)]
        torch.stack(objectives).sum().backward()  # each replica's parameters get its own gradient
        for r, member in enumerate(self.members):
            inputs = xb[r]
            if watch_inputs and xb.grad is not None:
                inputs = xb.detach()[r]
                inputs.grad = xb.grad[r]
            assert member.sums is not None
            loss = data_losses[r]
            member.trainer.descend(member.sums, internals[r], inputs, out[r], yb[r], loss, step=False)
        self.optimizers.step()


def _train_epoch(members: list[Replica]) -> list[Replica]:
    """One epoch of every member, stacked; returns those that finished it (the others were cancelled)."""
    first = members[0].trainer
    for member in members:
        trainer = member.trainer
        member.sums = EpochSums(trainer.device)
        trainer.model.train()
        trainer.diagnostics.start_epoch()
        member.order = torch.randperm(len(trainer.data.X_train), generator=trainer.batches).to(trainer.device)
    stack = Stack(members)
    for step in range(first.steps_per_epoch()):
        cancelled = [m for m in stack.members if any(c.should_stop() for c in m.trainer.callbacks)]
        if cancelled:
            for member in cancelled:
                member.end(member.trainer.finish("cancelled", "cancelled"))
            remaining = [m for m in stack.members if m not in cancelled]
            if not remaining:
                return []
            stack = Stack(remaining)
        stack.step(step, first.spec.training.batch_size)
    return stack.members


def _same_shapes(replicas: Sequence[Replica]) -> bool:
    """One stacked model needs one architecture, one batch plan and one device."""
    shapes = {
        (replica_key(r.trainer.spec), tuple(r.trainer.data.X_train.shape), r.trainer.device) for r in replicas
    }
    return len(shapes) == 1


def _run_together(replicas: list[Replica], after_epoch: Callable[[], None]) -> None:
    """Epoch by epoch; a replica behind the others (a resume) catches up before they train together."""
    while active := [r for r in replicas if r.result is None]:
        epoch = min(r.trainer.epoch for r in active)
        movers = [r for r in active if r.trainer.epoch == epoch]
        started = time.perf_counter()
        try:
            finished = _train_epoch(movers)
        except FAILURES as failure:  # the stacked step itself failed (out of memory): every mover with it
            for member in movers:
                if member.result is None:
                    member.end(failed_result(member.trainer, failure, member.started))
            continue
        trained_for = time.perf_counter() - started
        for member in finished:
            trainer = member.trainer
            assert member.sums is not None
            member.make_global()
            try:
                trainer.end_epoch(member.sums, time.perf_counter() - trained_for)
            except FAILURES as failure:  # a non-finite loss fails this replica's job only
                member.end(failed_result(trainer, failure, member.started))
                continue
            if trainer.finished:
                reason = trainer.stopper.reason if trainer.stopper.stopped else "completed all epochs"
                member.end(trainer.finish("succeeded", reason))
        after_epoch()


def _run_one_by_one(replicas: list[Replica], after_epoch: Callable[[], None]) -> None:
    """Jobs that cannot stack run as fit() runs them, each from the random stream it would have alone."""
    for replica in replicas:
        replica.make_global()
        replica.trainer.callbacks.append(AfterEpoch(after_epoch))
        try:
            replica.end(replica.trainer.run())
        except FAILURES as failure:
            replica.end(failed_result(replica.trainer, failure, replica.started))
        after_epoch()


class AfterEpoch(Callback):
    """Calls `action` after each epoch of a replica that trains alone (the group's callbacks saw it)."""

    def __init__(self, action: Callable[[], None]) -> None:
        self.action = action

    def on_epoch_end(self, record: EpochRecord) -> None:
        """Run the action."""
        self.action()


def fit_group(
    specs: Sequence[JobSpec],
    out_dirs: Sequence[Path | str | None] | None = None,
    callbacks: Sequence[Sequence[Callback]] | None = None,
    resume: bool = False,
    after_epoch: Callable[[], None] = lambda: None,
) -> list[RunResult]:
    """Train the jobs of `specs` (one configuration, several seeds) together; one result per spec.

    Each job's folder, callbacks and result are exactly what fit(spec, out_dir, callbacks) gives it.
    `after_epoch` is called once the group's replicas have all ended an epoch (to batch their reports).
    """
    outs = [Path(o) if o is not None else None for o in (out_dirs or [None] * len(specs))]
    hooks = callbacks or [()] * len(specs)
    results: list[RunResult | None] = [None] * len(specs)
    replicas: dict[int, Replica] = {}
    for index, (spec, out, own) in enumerate(zip(specs, outs, hooks, strict=True)):
        started, trainer = time.perf_counter(), None
        try:
            trainer = Trainer(spec, out, own)
            if resume and out is not None:
                trainer.resume()
        except FAILURES as failure:
            results[index] = failed_result(trainer, failure, started)
            continue
        replica = replicas[index] = Replica.capture(trainer)
        replica.started = started
    members = list(replicas.values())
    for member in members:
        member.trainer.prepare_folder()
        if member.trainer.stopper.stopped:
            reason = "early stopping had already fired before the resume"
            member.end(member.trainer.finish("succeeded", reason))
        elif member.trainer.finished:
            member.end(member.trainer.finish("succeeded", "completed all epochs"))
    stackable = bool(members) and can_stack(members[0].trainer.spec) and _same_shapes(members)
    runner = _run_together if stackable else _run_one_by_one
    runner([m for m in members if m.result is None], after_epoch)
    for index, replica in replicas.items():
        results[index] = replica.result
    final = [r if r is not None else RunResult(status="failed", error="did not run") for r in results]
    for out, result in zip(outs, final, strict=True):
        write_result(out, result)
    return final
