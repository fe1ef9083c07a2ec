"""fit_group(): jobs of one network that differ only in what each replica keeps to itself (seed, optimizer,
activation, ...: training.grouping), trained as one stacked model.

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
from training.metrics import CPU_STACKED_EVAL_CHUNK, EVAL_CHUNK
from training.network import Internals, LayerInternals
from training.optim import backward, l2_penalty
from training.records import EpochRecord, RunResult
from training.spec import JobSpec, Task
from training.stacked import DropoutMasks, StackedNetwork
from training.stacked_diagnostics import StackedDiagnostics, replica_internals
from training.stacked_metrics import StackedClipping, StackedSums, select_rows, stacked_loss
from training.stacked_optim import hyperparameters, stacked_optimizers

Evaluation = dict[str, torch.Tensor]


class ReplicaTrainer(Trainer):
    """A replica's trainer: its epoch's evaluations may come from the group's stacked pass."""

    def __init__(
        self, spec: JobSpec, out_dir: Path | None, callbacks: Sequence[Callback], checkpoint_seconds: float
    ) -> None:
        super().__init__(spec, out_dir, callbacks, checkpoint_seconds)
        self.evaluated: dict[int, Evaluation] = {}  # by id() of the split's inputs

    def evaluate(self, X: torch.Tensor, y: torch.Tensor, observe: bool = False) -> Evaluation:
        """The stacked pass's result for this split when it has one (it observed too), else the job's own."""
        ready = self.evaluated.pop(id(X), None)
        return ready if ready is not None else super().evaluate(X, y, observe=observe)


@dataclass(eq=False)
class Replica:
    """One job of the group: its trainer, its dropout stream, and its result once it has ended."""

    trainer: ReplicaTrainer
    cpu_rng: torch.Tensor  # torch's global CPU generator state the job alone would have
    dropout: torch.Generator  # the generator its dropout masks come from (the device's own stream)
    started: float = field(default_factory=time.perf_counter)
    order: torch.Tensor | None = None
    result: RunResult | None = None

    @classmethod
    def capture(cls, trainer: ReplicaTrainer) -> Replica:
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
    """The replicas training together, as one stacked model over their stacked training data; it lasts
    from epoch to epoch while they and their optimizers' settings stay the same."""

    def __init__(self, members: Sequence[Replica], sums: StackedSums | None = None) -> None:
        self.members = list(members)
        self.trainers = trainers = [m.trainer for m in self.members]
        first = trainers[0]
        self.settings = _settings(self.members)
        self.order(sums)
        self.network = StackedNetwork([t.model for t in trainers])
        self.masks = DropoutMasks([m.dropout for m in self.members])
        self.optimizers = stacked_optimizers([t.optimizer for t in trainers], self.network.shared)
        self.loss = stacked_loss(first.spec, first.data.task)
        self.clipping = StackedClipping(
            [t.spec.clipping for t in trainers],
            [_grads(t) for t in trainers],
            [leaf.grad for leaf in self.network.leaves if leaf.grad is not None],
            [[p.grad for p in own if p.grad is not None] for own in self.network.own],
        )
        self.classify = first.data.task == Task.classification
        self.l2 = [t for t in trainers if t.spec.generalization.l2 > 0 and t.weights]
        self.diagnostics = StackedDiagnostics([t.diagnostics for t in trainers], self.network.shared)

    def order(self, sums: StackedSums | None = None) -> None:
        """Start an epoch (or its rest): each replica's training data in its epoch's order, so that a
        step's batch is a slice, and the epoch's sums so far."""
        orders = torch.stack([m.order for m in self.members if m.order is not None])
        rows = torch.arange(len(self.members), device=orders.device).unsqueeze(1)
        self.X = torch.stack([t.data.X_train for t in self.trainers])[rows, orders]
        self.y = torch.stack([t.data.y_train for t in self.trainers])[rows, orders]
        self.sums = sums or StackedSums(len(self.members), self.trainers[0].device)

    def serves(self, members: Sequence[Replica]) -> bool:
        """Whether this stack can train the next epoch of `members` (the same replicas, settings alike)."""
        return self.members == list(members) and self.settings == _settings(members)

    def without(self, dropped: Sequence[Replica]) -> Stack:
        """The stack of the other replicas, their epoch's sums so far included."""
        rows = [r for r, m in enumerate(self.members) if m not in dropped]
        self.diagnostics.flush()
        return Stack([self.members[r] for r in rows], select_rows(self.sums, rows))

    def step(self, step: int, batch: int) -> None:
        """One gradient step of every replica: forward, backward and the measurements together, then
        each one's own update."""
        xb, yb = self.X[:, step * batch : (step + 1) * batch], self.y[:, step * batch : (step + 1) * batch]
        first = self.trainers[0]
        sampled = first.diagnostics.watch(step, xb[0])[1] is not None  # one setting for all replicas
        internals: Internals | None = {} if sampled else None
        watch_inputs = sampled and first.diagnostics.sequences
        if watch_inputs:  # to see how far back in time the error signal reaches, as a job alone does
            xb = xb.detach().requires_grad_(True)
        with first.precision():
            out = self.network(xb, self.masks, internals)
            losses = self.loss(out, yb)
        objective = losses.sum()  # each replica's parameters get its own gradient
        for trainer in self.l2:
            objective = objective + l2_penalty(trainer.weights, trainer.spec.generalization.l2)
        self.network.zero_grad()
        backward(objective)
        if internals is not None and self.diagnostics.usable:
            self.diagnostics.sample(internals, out)
        elif internals is not None:
            for r, trainer in enumerate(self.trainers):
                inputs = xb[r]
                if watch_inputs and xb.grad is not None:
                    inputs = xb.detach()[r]
                    inputs.grad = xb.grad[r]
                trainer.diagnostics.sample(replica_internals(internals, r), out[r], inputs)
        norms, clipped = self.clipping()
        self.optimizers.step()
        if first.data.targets is not None:  # the running loss is reported in the targets' units
            losses = self._reported(out.detach(), yb)
        self.sums.add(losses, out if self.classify else None, yb, norms, clipped)

    def evaluate(self) -> None:
        """Every replica's epoch-end evaluations (training sample, validation split) as stacked passes."""
        trainers = self.trainers
        self.diagnostics.flush()
        for trainer in trainers:
            trainer.evaluated.clear()
        train = [t.train_sample for t in trainers]
        val = [(t.data.X_val, t.data.y_val) for t in trainers]
        for split, observe in ((train, True), (val, False)):
            if len(split[0][0]) == 0 or len({X.shape for X, _ in split}) > 1:
                continue  # no such split, or of other sizes: each replica evaluates its own
            counts = [observe and t.diagnostics.counts_dead_units for t in trainers]
            with trainers[0].precision():
                results = self._evaluate(split, counts)
            for trainer, (X, _), result in zip(trainers, split, results, strict=True):
                trainer.evaluated[id(X)] = result

    @torch.inference_mode()
    def _evaluate(
        self, split: list[tuple[torch.Tensor, torch.Tensor]], observe: list[bool]
    ) -> list[Evaluation]:
        """Each replica's mean loss (original units) and accuracy on its split in eval mode, as evaluate()
        measures them; the diagnostics of each replica `observe` marks see its hidden layers."""
        for trainer in self.trainers:
            trainer.model.eval()
        X, y = torch.stack([X for X, _ in split]), torch.stack([y for _, y in split])
        count = X.shape[1]
        loss_sum = torch.zeros(len(split), device=X.device)
        correct = torch.zeros(len(split), device=X.device)
        total = CPU_STACKED_EVAL_CHUNK if X.device.type == "cpu" else EVAL_CHUNK
        rows = max(1, total // len(split))  # the replicas' chunks together stay in cache
        for start in range(0, count, rows):
            xb, yb = X[:, start : start + rows], y[:, start : start + rows]
            internals: Internals | None = {} if any(observe) else None
            out = self.network(xb, None, internals)
            fired = {name: _fired(item) for name, item in (internals or {}).items()}
            for r, trainer in enumerate(self.trainers):
                if observe[r]:
                    trainer.diagnostics.observe(
                        {name: LayerInternals(f[r : r + 1], f[r : r + 1]) for name, f in fired.items()}
                    )
            loss_sum += self._reported(out, yb) * xb.shape[1]
            if self.classify:
                correct += (out.argmax(dim=-1) == yb).sum(dim=1)
        return [{"loss": loss_sum[r] / count, "correct": correct[r] / count} for r in range(len(split))]

    def _reported(self, out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """(R,) losses as reported: regression targets back in their original units (each replica's own)."""
        if self.trainers[0].data.targets is None:
            return self.loss(out, y)
        return torch.stack([t.reported_loss(out[r], y[r]) for r, t in enumerate(self.trainers)])


def _fired(item: LayerInternals) -> torch.Tensor:
    """(R, units): each replica's largest net input per unit over the chunk's examples (and positions);
    a unit fired on some example exactly when it is above 0, which is all observe() asks of a layer."""
    source = item.net_input if item.net_input is not None else item.output
    return source.amax(dim=[d for d in range(1, source.dim()) if d != item.unit_dim])


def _grads(trainer: Trainer) -> list[torch.Tensor]:
    """The trainer's gradients (the stacked network has given every parameter one)."""
    return [p.grad for p in trainer.params if p.grad is not None]


def _settings(members: Sequence[Replica]) -> list[str]:
    """What a schedule may change between epochs and a stack is built for: the optimizers' settings."""
    return [hyperparameters(m.trainer.optimizer) for m in members]


def _train_epoch(members: list[Replica], previous: Stack | None) -> Stack | None:
    """One epoch of every member, stacked (on the previous epoch's stack when it serves them); the stack
    of those that finished it (None: all cancelled)."""
    first = members[0].trainer
    for member in members:
        trainer = member.trainer
        trainer.model.train()
        trainer.diagnostics.start_epoch()
        member.order = torch.randperm(len(trainer.data.X_train), generator=trainer.batches).to(trainer.device)
    if previous is not None and previous.serves(members):
        stack = previous
        stack.order()
    else:
        stack = Stack(members)
    for step in range(first.steps_per_epoch()):
        cancelled = [m for m in stack.members if any(c.should_stop() for c in m.trainer.callbacks)]
        if cancelled:
            for member in cancelled:
                member.end(member.trainer.finish("cancelled", "cancelled"))
            if len(cancelled) == len(stack.members):
                return None
            stack = stack.without(cancelled)
        stack.step(step, first.spec.training.batch_size)
    return stack


def _same_shapes(replicas: Sequence[Replica]) -> bool:
    """One stacked model needs one architecture, one batch plan and one device."""
    shapes = {
        (replica_key(r.trainer.spec), tuple(r.trainer.data.X_train.shape), r.trainer.device) for r in replicas
    }
    return len(shapes) == 1


def _run_together(replicas: list[Replica], after_epoch: Callable[[], None]) -> None:
    """Epoch by epoch; a replica behind the others (a resume) catches up before they train together."""
    replicas = sorted(replicas, key=lambda r: r.trainer.spec.activation)  # one call per activation
    stack: Stack | None = None
    while active := [r for r in replicas if r.result is None]:
        epoch = min(r.trainer.epoch for r in active)
        movers = [r for r in active if r.trainer.epoch == epoch]
        started = time.perf_counter()
        try:
            stack = _train_epoch(movers, stack)
            if stack is not None:
                stack.evaluate()
        except FAILURES as failure:  # the stacked step itself failed (out of memory): every mover with it
            for member in movers:
                if member.result is None:
                    member.end(failed_result(member.trainer, failure, member.started))
            stack = None
            continue
        trained_for = time.perf_counter() - started
        for row, member in enumerate(stack.members if stack is not None else ()):
            assert stack is not None
            trainer = member.trainer
            member.make_global()
            try:
                trainer.end_epoch(stack.sums.row(row), time.perf_counter() - trained_for)
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
    checkpoint_seconds: float = 0.0,
) -> list[RunResult]:
    """Train the jobs of `specs` (one configuration, several seeds) together; one result per spec.

    Each job's folder, callbacks and result are exactly what fit(spec, out_dir, callbacks,
    checkpoint_seconds=checkpoint_seconds) gives it. `after_epoch` is called once the group's replicas
    have all ended an epoch (to batch their reports).
    """
    outs = [Path(o) if o is not None else None for o in (out_dirs or [None] * len(specs))]
    hooks = callbacks or [()] * len(specs)
    results: list[RunResult | None] = [None] * len(specs)
    replicas: dict[int, Replica] = {}
    for index, (spec, out, own) in enumerate(zip(specs, outs, hooks, strict=True)):
        started, trainer = time.perf_counter(), None
        try:
            trainer = ReplicaTrainer(spec, out, own, checkpoint_seconds)
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
