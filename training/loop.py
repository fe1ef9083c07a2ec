"""fit(): the epoch loop. Data stays on the device; losses are read from it once per epoch."""

from __future__ import annotations

import json
import math
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import torch

from training.callbacks import Callback, CheckpointInfo, EarlyStopper, MetricsLog
from training.checkpoint import (
    CheckpointWriter,
    Contents,
    callback_states,
    check_resumable,
    checkpoint_contents,
    link_atomically,
    prefixed,
    read_checkpoint,
    restore_optimizer,
    restore_rng,
    rng_state,
    write_checkpoint,
)
from training.data import Splits, prepare
from training.device import JobFailure, TrainingDiverged, precision_context, release_memory, resolve_device
from training.diagnostics import Diagnostics
from training.metrics import TRAIN_SAMPLE, EpochSums, evaluate, in_original_units, split_metrics
from training.network import Internals, Network, build_network, weight_matrices
from training.optim import (
    backward,
    build_optimizer,
    build_scheduler,
    clip_gradients,
    grad_norms,
    l2_penalty,
    loss_function,
    step_optimizer,
    step_scheduler,
    stretch_schedule,
)
from training.records import EpochRecord, RunResult, RunStatus
from training.spec import JobSpec, LayerNormalization, Task, lint, network_misfit
from training.tabular import DatasetError

GATHER_BYTES = 2 * 2**20  # rows of several batches gathered at once, up to this much (in memory.py's slack)


def shuffled_batches(
    X: torch.Tensor, y: torch.Tensor, order: torch.Tensor, batch: int, steps: int
) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """The epoch's `steps` batches in `order`: rows gathered a block of batches at a time, each batch a view.

    The same batches as indexing X with each batch's slice of `order`, with one gather per block.
    """
    row_bytes = max(X[:1].nbytes + y[:1].nbytes, 1)
    per_block = max(GATHER_BYTES // (row_bytes * batch), 1)
    for first in range(0, steps, per_block):
        count = min(per_block, steps - first)
        rows = order[first * batch : (first + count) * batch]
        X_block, y_block = X[rows], y[rows]
        for i in range(count):
            yield X_block[i * batch : (i + 1) * batch], y_block[i * batch : (i + 1) * batch]


class Trainer:
    """One training run of a spec; fit() is its public face."""

    def __init__(
        self,
        spec: JobSpec,
        out_dir: Path | None,
        callbacks: Sequence[Callback],
        checkpoint_seconds: float = 0.0,
    ) -> None:
        self.spec, self.out_dir = spec, out_dir
        self.device = resolve_device(spec.training.device)
        self.precision = precision_context(spec.training.precision, self.device)
        self.started, self.seconds_before = time.perf_counter(), 0.0  # seconds of earlier attempts
        torch.manual_seed(spec.training.seed)
        scaling, seed = spec.normalization, spec.training.seed
        self.data: Splits = prepare(spec.dataset, scaling.inputs, seed, self.device, scaling.targets)
        self.train_sample = self.data.train_sample(TRAIN_SAMPLE, seed)
        facts = self.data
        self.warnings = [
            w.code
            for w in lint(
                spec,
                feature_scale=facts.feature_scale,
                sequence_length=facts.sequence_length,
                unstratified_classes=facts.unstratified_classes,
            )
        ]
        if misfit := network_misfit(spec.network, self.data.kind, spec.dataset):
            raise DatasetError(misfit)  # files and uploads show their kind only once read
        if spec.normalization.layers == LayerNormalization.batch and spec.training.batch_size < 2:
            raise JobFailure(
                "batch normalization needs batches of at least 2 examples to compute its statistics: "
                "set training.batch_size ≥ 16, or use normalization.layers: layer"
            )
        self.model: Network = build_network(spec, self.data.input_shape, self.data.outputs).to(self.device)
        self.params = [p for p in self.model.parameters() if p.requires_grad]
        self.weights = weight_matrices(self.model)
        self.optimizer = build_optimizer(spec.optimizer, self.params, self.weights)
        self.scheduler = build_scheduler(spec.optimizer, self.optimizer, spec.training.epochs)
        self.loss_fn = loss_function(spec, self.data.task)  # the objective, on (scaled) targets
        self.reported_loss = in_original_units(self.loss_fn, self.data.targets)
        self.batches = torch.Generator().manual_seed(spec.training.seed)
        self.epoch = 0
        self.final_record: EpochRecord | None = None
        self.restored_best = False  # the run ends with the best epoch's weights (else the last's)
        self.best_saved: int | None = None  # the epoch whose `best` file was written last
        checkpoints = out_dir / "checkpoints" if out_dir is not None else None
        self.stopper = EarlyStopper.from_spec(spec.generalization.early_stopping, len(self.data.X_val) > 0)
        stopping = spec.generalization.early_stopping
        self.checkpoints = CheckpointWriter(
            checkpoints,
            self._save,
            self._contents,
            self.stopper,
            spec.training.checkpoint_every,
            self.model,
            keep_best=bool(stopping and stopping.restore_best),
            seconds=checkpoint_seconds,
        )
        self.diagnostics = Diagnostics(self.model, spec, sequences=self.data.kind == "sequence")
        self.metrics_log = MetricsLog(out_dir / "metrics.jsonl") if out_dir is not None else None
        # metrics.jsonl first, then the caller's callbacks: they see each record and may cancel
        self.callbacks = [*([self.metrics_log] if self.metrics_log else []), *callbacks]

    @property
    def stateful(self) -> list[Callback]:
        """Every callback whose state a checkpoint carries."""
        return [self.stopper, self.checkpoints, self.diagnostics, *self.callbacks]

    def _train_epoch(self) -> EpochSums | None:
        """One pass over the training data; None when a callback asked to stop mid-epoch."""
        X, y, batch = self.data.X_train, self.data.y_train, self.spec.training.batch_size
        steps = self.steps_per_epoch()
        sums = EpochSums(self.device)
        self.model.train()
        self.diagnostics.start_epoch()
        order = torch.randperm(len(X), generator=self.batches).to(self.device)
        polled = [c for c in self.callbacks if type(c).should_stop is not Callback.should_stop]
        for step, (xb, yb) in enumerate(shuffled_batches(X, y, order, batch, steps)):
            if any(callback.should_stop() for callback in polled):
                return None
            xb, internals = self.diagnostics.watch(step, xb)
            with self.precision():
                out = self.model(xb, internals)
                data_loss = self.loss_fn(out, yb)
            for param in self.params:  # zero_grad(set_to_none=True) without its wrapper (~15 µs a step)
                param.grad = None
            backward(self.objective(data_loss))
            self.descend(sums, internals, xb, out, yb, data_loss)
        return sums

    def steps_per_epoch(self) -> int:
        """Batches per epoch (batch norm cannot train on a final batch of one example: it is dropped)."""
        examples, batch = len(self.data.X_train), self.spec.training.batch_size
        steps = math.ceil(examples / batch)
        if self.spec.normalization.layers == LayerNormalization.batch and examples % batch == 1 and steps > 1:
            steps -= 1
        return steps

    def objective(self, data_loss: torch.Tensor) -> torch.Tensor:
        """What a step minimizes: the data loss plus the L2 term (when the spec asks for one)."""
        l2 = self.spec.generalization.l2 if self.weights else 0.0
        return data_loss + l2_penalty(self.weights, l2) if l2 > 0 else data_loss

    def descend(
        self,
        sums: EpochSums,
        internals: Internals | None,
        xb: torch.Tensor,
        out: torch.Tensor,
        y: torch.Tensor,
        data_loss: torch.Tensor,
        step: bool = True,
    ) -> None:
        """After backward: sample diagnostics, clip, step the optimizer and add the step to the sums.

        step=False leaves the optimizer step to the caller (a replica group steps its replicas at once).
        """
        if internals is not None:  # before clipping, so per-layer norms show an explosion too
            self.diagnostics.sample(internals, out, xb)
        norm, clipped = clip_gradients(self.spec.clipping, self.params)
        if norm is None:  # the per-tensor norms; their joint norm is taken for all steps at the epoch's end
            sums.add_norm_parts(grad_norms(self.params))
        else:
            sums.add_grad_norm(norm, clipped)
        if step:
            step_optimizer(self.optimizer)
        if self.data.targets is not None:  # the running loss is reported in the targets' units
            data_loss = self.reported_loss(out.detach(), y)
        sums.add_batch(data_loss, out, y, self.data.task == Task.classification)

    def evaluate(self, X: torch.Tensor, y: torch.Tensor, observe: bool = False) -> dict[str, torch.Tensor]:
        """Mean loss (original units) and accuracy of a split in eval mode, on the device."""
        watch = self.diagnostics.observe if observe and self.diagnostics.counts_dead_units else None
        with self.precision():
            return evaluate(self.model, X, y, self.reported_loss, self.data.task, watch)

    def _metrics(self, split: str, loss: float | None, correct: float | None) -> dict[str, float | None]:
        return split_metrics(split, self.data.task, self.spec.training.loss, loss, correct)

    def _epoch_record(self, sums: EpochSums, started: float) -> EpochRecord:
        """Evaluate the training sample and validation split, and read the epoch's numbers in one go."""
        values = {f"running_{k}": v for k, v in sums.means().items()}
        train = self.evaluate(*self.train_sample, observe=True)
        values.update(train_loss=train["loss"], train_correct=train["correct"])
        if len(self.data.X_val) > 0:
            val = self.evaluate(self.data.X_val, self.data.y_val)
            values.update(val_loss=val["loss"], val_correct=val["correct"])
        numbers = torch.cat([torch.stack([v.float() for v in values.values()]), self.diagnostics.readings()])
        everything = numbers.tolist()  # the epoch's one read from the device
        read = dict(zip(values, everything, strict=False))
        diagnostics = self.diagnostics.fields(everything[len(values) :])
        seconds = time.perf_counter() - started
        fields: dict[str, Any] = {"epoch": self.epoch}
        fields.update(self._metrics("train", read["train_loss"], read["train_correct"]))
        fields.update(self._metrics("train_running", read["running_loss"], read["running_correct"]))
        fields.update(self._metrics("val", read.get("val_loss"), read.get("val_correct")))
        if self.spec.generalization.l2 > 0:
            with torch.no_grad():
                fields["l2_penalty"] = float(l2_penalty(self.weights, self.spec.generalization.l2))
        fields.update(
            learning_rate=self.optimizer.param_groups[0]["lr"],
            grad_norm=read["running_grad_norm"],
            grad_norm_max=read["running_grad_norm_max"],
            clipped_fraction=read["running_clipped"] if self.spec.clipping else None,
            seconds=round(seconds, 6),
            samples_per_second=round(sums.examples / seconds, 1) if seconds > 0 else None,
            **diagnostics,
        )
        return EpochRecord(**fields)

    def _contents(self) -> Contents:
        """A checkpoint of this moment: weights, optimizer, RNG and every callback's state."""
        meta = {
            "spec": self.spec.model_dump(mode="json"),
            "epoch": self.epoch,
            "task": self.data.task.value,
            "input_shape": list(self.data.input_shape),
            "outputs": self.data.outputs,
            "class_labels": self.data.class_labels,
            "feature_names": self.data.feature_names,
            "scheduler": self.scheduler.state_dict() if self.scheduler is not None else None,
            "callbacks": {c.state_key: state for c in self.stateful if (state := c.state_dict())},
            "seconds": self.seconds_before + time.perf_counter() - self.started,
            "torch_version": torch.__version__,
        }
        return checkpoint_contents(
            model=self.model,
            scaler=self.data.scaler,
            meta=meta,
            optimizer=self.optimizer,
            rng=rng_state(self.device, self.batches),
            targets=self.data.targets,
        )

    def _save(self, name: str, contents: Contents | None = None) -> None:
        """Write checkpoint `name` (of this moment, or `contents` taken earlier) and announce it; `last`
        right after the same epoch's `best` is that file under its name (a hard link: written once)."""
        if self.out_dir is None:
            return
        folder = self.out_dir / "checkpoints"
        path = folder / f"{name}.safetensors"
        epoch = contents.epoch if contents is not None else self.epoch
        same_as_best = name == "last" and self.best_saved == epoch
        # later writes of either file replace its name, never the file both names share
        if not (same_as_best and link_atomically(folder / "best.safetensors", path)):
            contents = contents or self._contents()
            write_checkpoint(path, contents)
        self.best_saved = epoch if name == "best" else self.best_saved
        for callback in self.callbacks:
            callback.on_checkpoint(CheckpointInfo(name=name, path=path, epoch=epoch))

    def resume(self) -> None:
        """Continue exactly where the `last` checkpoint left off (weights, optimizer, RNG, callbacks)."""
        assert self.out_dir is not None
        path = self.out_dir / "checkpoints" / "last.safetensors"
        if not path.exists():
            return  # nothing to resume from: a fresh start
        try:
            tensors, meta = read_checkpoint(path)
        except Exception as error:  # safetensors, json and torch each raise their own types
            raise JobFailure(
                f"the checkpoint to resume from ({path.name}) is damaged and cannot be read ({error}): "
                "start the run afresh (without --resume; a service job: submit it again)"
            ) from None
        check_resumable(path, meta, self.spec)
        try:
            self.model.load_state_dict(prefixed(tensors, "model."))
            restore_optimizer(self.optimizer, tensors, meta)
            if self.scheduler is not None and meta["scheduler"] is not None:
                self.scheduler.load_state_dict(meta["scheduler"])
                stretch_schedule(self.scheduler, self.spec.training.epochs)  # --epochs may have changed
            restore_rng(tensors, self.device, self.batches)
        except (KeyError, ValueError, RuntimeError) as error:
            raise JobFailure(
                f"the checkpoint to resume from ({path.name}) is incomplete ({error}): "
                "start the run afresh (without --resume; a service job: submit it again)"
            ) from None
        states = callback_states(meta)
        for callback in self.stateful:
            if callback.state_key in states:
                callback.load_state_dict(states[callback.state_key])
        self.epoch, self.seconds_before, self.started = meta["epoch"], meta["seconds"], time.perf_counter()

    def prepare_folder(self) -> None:
        """spec.json, and no metrics or checkpoints past the epoch the run starts from."""
        if self.out_dir is None or self.metrics_log is None:  # both or neither
            return
        self.out_dir.mkdir(parents=True, exist_ok=True)
        (self.out_dir / "spec.json").write_text(self.spec.model_dump_json(indent=2))
        self.metrics_log.start(self.epoch)
        if self.epoch == 0:  # a fresh start: checkpoints of an earlier run in this folder are not ours
            for stale in (self.out_dir / "checkpoints").glob("*.safetensors"):
                stale.unlink()

    def run(self) -> RunResult:
        """Train until the epochs run out, early stopping fires, or a callback cancels."""
        status: RunStatus = "succeeded"
        stop_reason = "completed all epochs"
        self.prepare_folder()
        if self.stopper.stopped:
            stop_reason = "early stopping had already fired before the resume"
        while not self.finished:
            started = time.perf_counter()
            sums = self._train_epoch()
            if sums is None:
                status, stop_reason = "cancelled", "cancelled"
                break
            self.end_epoch(sums, started)
            if self.stopper.stopped:
                stop_reason = self.stopper.reason
        return self.finish(status, stop_reason)

    @property
    def finished(self) -> bool:
        """The epochs ran out or early stopping fired."""
        return self.epoch >= self.spec.training.epochs or self.stopper.stopped

    def end_epoch(self, sums: EpochSums, started: float) -> EpochRecord:
        """Count the epoch and record it; the schedule, early stopping, callbacks and checkpoints see it."""
        self.epoch += 1
        record = self._epoch_record(sums, started)
        loss = record.train_running_loss
        if loss is None or not math.isfinite(loss) or not math.isfinite(record.train_loss or 0.0):
            raise TrainingDiverged(loss, self.epoch, self.optimizer.param_groups[0]["lr"])
        step_scheduler(self.scheduler, record)
        self.stopper.on_epoch_end(record)
        self.final_record = record
        for callback in self.callbacks:
            callback.on_epoch_end(record)
        self.checkpoints.on_epoch_end(record)
        return record

    def finish(self, status: RunStatus, stop_reason: str) -> RunResult:
        """Restore the best weights when the spec asks to, then the run's result."""
        self.checkpoints.flush()  # before the best weights replace the last
        stopping = self.spec.generalization.early_stopping
        if stopping and stopping.restore_best and self.checkpoints.best_weights is not None:
            self.model.load_state_dict(self.checkpoints.best_weights)
            self.restored_best = True
        return self.result(status, stop_reason)

    def result(self, status: RunStatus, stop_reason: str, error: str | None = None) -> RunResult:
        """The run's outcome; the test split is measured on the weights the run ends with."""
        test = None
        if len(self.data.X_test) > 0 and status != "failed":
            stats = self.evaluate(self.data.X_test, self.data.y_test)
            test = self._metrics("test", stats["loss"].item(), stats["correct"].item())

        def summary(record: EpochRecord | None) -> EpochRecord | None:
            return EpochRecord.model_validate(record.model_dump(exclude={"layers"})) if record else None

        return RunResult(
            status=status,
            epochs_run=self.epoch,
            stopped_early=self.stopper.stopped,
            stop_reason=stop_reason,
            best_epoch=self.stopper.best_epoch,
            best=summary(self.checkpoints.best_record),
            final=summary(self.final_record),
            test=test,
            model_checkpoint="best" if self.restored_best else "last",
            unstratified_classes=self.data.unstratified_classes,
            parameters=sum(p.numel() for p in self.params),
            seconds=round(self.seconds_before + time.perf_counter() - self.started, 3),
            device=str(self.device),
            torch_version=torch.__version__,
            warnings=self.warnings,
            error=error,
        )


def fit(
    spec: JobSpec,
    out_dir: Path | str | None = None,
    callbacks: Sequence[Callback] = (),
    resume: bool = False,
    checkpoint_seconds: float = 0.0,
) -> RunResult:
    """Train the network a spec describes; writes metrics.jsonl, checkpoints and result.json to out_dir.

    `checkpoint_seconds`: write `best` and `last` at most this often, and at the end (0: every epoch).
    """
    out = Path(out_dir) if out_dir is not None else None
    if resume and out is None:
        raise ValueError("resume needs the out_dir of the run to continue")
    started = time.perf_counter()
    trainer: Trainer | None = None
    try:
        trainer = Trainer(spec, out, callbacks, checkpoint_seconds)
        if resume:
            trainer.resume()
        result = trainer.run()
    except FAILURES as failure:
        result = failed_result(trainer, failure, started)
    write_result(out, result)
    return result


# What ends a run as `failed` with a message a person can act on, instead of a traceback.
FAILURES = (JobFailure, DatasetError, torch.OutOfMemoryError)


def failed_result(trainer: Trainer | None, failure: BaseException, started: float) -> RunResult:
    """The result of a run that ended in one of FAILURES (what it measured so far, when it got going)."""
    message = str(failure)
    if isinstance(failure, torch.OutOfMemoryError):
        release_memory(failure)
        first = str(failure).splitlines()[0] if str(failure) else "no details"
        message = (
            f"out of memory on {trainer.device if trainer else 'the device'}: make the network or "
            f"training.batch_size smaller, or run it on a device with more memory ({first})"
        )
    if trainer is not None:
        result = trainer.result("failed", "failed", message)
    else:
        result = RunResult(status="failed", error=message)
    result.seconds = round(time.perf_counter() - started, 3)
    return result


def write_result(out: Path | None, result: RunResult) -> None:
    """result.json next to the run's metrics and checkpoints."""
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
        (out / "result.json").write_text(json.dumps(result.model_dump(mode="json"), indent=2))
