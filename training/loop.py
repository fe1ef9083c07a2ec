"""fit(): the epoch loop. Data stays on the device; losses are read from it once per epoch."""

from __future__ import annotations

import json
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

from training.callbacks import Callback, CheckpointInfo, Result
from training.checkpoint import prefixed, read_checkpoint, restore_optimizer, save_checkpoint
from training.data import Splits, prepare
from training.diagnostics import LayerDiagnostics
from training.network import Internals, Network, build_network, weight_matrices
from training.optim import build_optimizer, build_scheduler, clip_gradients, global_grad_norm, l2_penalty
from training.spec import MAXIMIZED_METRICS, Adam, JobSpec, LayerNormalization, Loss, Task, lint
from training.tabular import DatasetError

EVAL_CHUNK = 8192


class JobFailure(RuntimeError):
    """A failure the user can act on: the run ends `failed` with this message instead of a traceback."""


class TrainingDiverged(JobFailure):
    """The loss became NaN or infinite."""


def resolve_device(name: str) -> torch.device:
    """auto -> cuda when available, else cpu."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise JobFailure(f"device {name!r} was asked for but CUDA is not available on this machine: use auto")
    return torch.device(name)


@dataclass
class EarlyStopper:
    """Tracks the best value of a metric; signals a stop after `patience` epochs without improvement."""

    monitor: str
    maximize: bool
    patience: int | None  # None: only track the best epoch, never stop
    min_delta: float = 0.0
    best: float | None = None
    best_epoch: int | None = None
    bad_epochs: int = 0

    def update(self, value: float, epoch: int) -> bool:
        """Record an epoch's value; True when it is the new best."""
        if self.best is None:
            improved = True
        elif self.maximize:
            improved = value > self.best + self.min_delta
        else:
            improved = value < self.best - self.min_delta
        if improved:
            self.best, self.best_epoch, self.bad_epochs = value, epoch, 0
        else:
            self.bad_epochs += 1
        return improved

    @property
    def should_stop(self) -> bool:
        """Patience ran out."""
        return self.patience is not None and self.bad_epochs >= self.patience

    def state(self) -> dict[str, Any]:
        """JSON-ready state, so a resumed run stops at the same epoch."""
        return {"best": self.best, "best_epoch": self.best_epoch, "bad_epochs": self.bad_epochs}

    def load(self, state: dict[str, Any]) -> None:
        """Restore from state()."""
        self.best, self.best_epoch, self.bad_epochs = state["best"], state["best_epoch"], state["bad_epochs"]


def _loss_function(spec: JobSpec, task: Task) -> Any:
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


class Trainer:
    """One training run of a spec; fit() is its public face."""

    def __init__(self, spec: JobSpec, out_dir: Path | None, callbacks: Sequence[Callback]) -> None:
        self.spec = spec
        self.out_dir = out_dir
        self.callbacks = list(callbacks)
        self.device = resolve_device(spec.training.device)
        self.started = time.perf_counter()
        self.seconds_before = 0.0  # time spent in earlier attempts of a resumed run
        torch.manual_seed(spec.training.seed)
        self.data: Splits = prepare(spec.dataset, spec.normalization.inputs, spec.training.seed, self.device)
        self.model: Network = build_network(spec, self.data.input_shape, self.data.outputs).to(self.device)
        self.params = [p for p in self.model.parameters() if p.requires_grad]
        self.weights = weight_matrices(self.model)
        self.optimizer = build_optimizer(spec.optimizer, self.params)
        self.scheduler = build_scheduler(spec.optimizer, self.optimizer, spec.training.epochs)
        self.loss_fn = _loss_function(spec, self.data.task)
        if spec.normalization.layers == LayerNormalization.batch and spec.training.batch_size < 2:
            raise JobFailure(
                "batch normalization needs batches of at least 2 examples to compute its statistics: "
                "set training.batch_size ≥ 16, or use normalization.layers: layer"
            )
        self.batches = torch.Generator().manual_seed(spec.training.seed)
        self.diagnostics = LayerDiagnostics(self.model, spec)
        self.sequences = len(self.data.input_shape) == 2
        stopping = spec.generalization.early_stopping
        monitor = stopping.monitor.value if stopping else "val_loss"
        if len(self.data.X_val) == 0 and monitor.startswith("val_"):
            monitor = "train_" + monitor.removeprefix("val_")  # no validation split: watch training data
        self.stopper = EarlyStopper(
            monitor=monitor,
            maximize=monitor in MAXIMIZED_METRICS or monitor.endswith("accuracy"),
            patience=stopping.patience if stopping else None,
            min_delta=stopping.min_delta if stopping else 0.0,
        )
        self.epoch = 0
        self.best_record: dict[str, Any] | None = None
        self.best_state: dict[str, torch.Tensor] | None = None
        self.final_record: dict[str, Any] | None = None
        kind = {1: "table", 2: "sequence", 3: "image"}[len(self.data.input_shape)]
        length = self.data.input_shape[0] if kind == "sequence" else None
        facts = {"feature_scale": self.data.feature_scale, "data_kind": kind, "sequence_length": length}
        self.warnings = [w.code for w in lint(spec, **facts)]  # type: ignore[arg-type]
        self._check_network_fits(kind)

    def _check_network_fits(self, kind: str) -> None:
        """Networks that cannot read this data fail with a reason (files and uploads are known only now)."""
        network = self.spec.network.type
        if network == "rnn" and kind != "sequence":
            raise DatasetError(
                f"network type rnn needs sequences (X of shape (N, T, F)); this dataset is a {kind}"
            )
        if network == "cnn" and kind != "image":
            raise DatasetError(f"network type cnn needs images; this dataset is a {kind}")

    # ------------------------------------------------------------------------------------ one epoch

    def _should_stop(self) -> bool:
        return any(callback.should_stop() for callback in self.callbacks)

    def _train_epoch(self) -> dict[str, torch.Tensor] | None:
        """One pass over the training data; None when a callback asked to stop mid-epoch."""
        X, y = self.data.X_train, self.data.y_train
        n, batch = len(X), self.spec.training.batch_size
        steps = math.ceil(n / batch)
        if self.spec.normalization.layers == LayerNormalization.batch and n % batch == 1 and steps > 1:
            steps -= 1  # batch norm cannot train on a final batch of one example: drop it
        every = self.spec.training.diagnostics_every
        classification = self.data.task == Task.classification
        zero = torch.zeros((), device=self.device)
        loss_sum, correct, seen = zero.clone(), zero.clone(), 0
        norm_sum, norm_max, clipped, norm_count = zero.clone(), zero.clone(), zero.clone(), 0
        reach, reach_count = torch.zeros(2, device=self.device), 0
        self.model.train()
        self.diagnostics.start_epoch()
        order = torch.randperm(n, generator=self.batches).to(self.device)
        for step in range(steps):
            if self.callbacks and self._should_stop():
                return None
            index = order[step * batch : (step + 1) * batch]
            xb, yb = X[index], y[index]
            sampled = every > 0 and step % every == 0
            internals: Internals | None = {} if sampled else None
            if sampled and self.sequences:
                xb = xb.detach().requires_grad_(True)  # to see how far back the error signal reaches
            out = self.model(xb, internals)
            data_loss = self.loss_fn(out, yb)
            loss = (
                data_loss + l2_penalty(self.weights, self.spec.generalization.l2)
                if self.weights and (self.spec.generalization.l2 > 0)
                else data_loss
            )
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if sampled:  # before clipping, so per-layer norms show an explosion as the global norm does
                self.diagnostics.sample(internals or {}, out)
                if self.sequences and xb.grad is not None:
                    step_grads = xb.grad.detach().transpose(0, 1).flatten(1).norm(dim=1)  # per time step
                    reach += torch.stack([step_grads[0], step_grads[-1]])
                    reach_count += 1
            norm, acted = clip_gradients(self.spec.clipping, self.params)
            if norm is None and sampled:
                norm = global_grad_norm(self.params)
            if norm is not None:
                norm_sum += norm
                norm_max = torch.maximum(norm_max, norm)
                norm_count += 1
            if acted is not None:
                clipped += acted
            self.optimizer.step()
            loss_sum += data_loss.detach() * len(index)
            if classification:
                correct += (out.argmax(dim=1) == yb).sum()
            seen += len(index)
        return {
            "loss": loss_sum / seen,
            "correct": correct / seen,
            "norm_mean": norm_sum / max(norm_count, 1),
            "norm_max": norm_max,
            "clipped": clipped / steps,
            "has_norm": torch.tensor(float(norm_count > 0)),
            "grad_first_step": reach[0] / max(reach_count, 1),
            "grad_last_step": reach[1] / max(reach_count, 1),
            "seen": torch.tensor(float(seen)),
        }

    @torch.inference_mode()
    def evaluate(self, X: torch.Tensor, y: torch.Tensor) -> dict[str, torch.Tensor]:
        """Mean loss and accuracy (or squared error) on a split, in eval mode."""
        self.model.eval()
        loss_sum = torch.zeros((), device=self.device)
        correct = torch.zeros((), device=self.device)
        for start in range(0, len(X), EVAL_CHUNK):
            xb, yb = X[start : start + EVAL_CHUNK], y[start : start + EVAL_CHUNK]
            out = self.model(xb)
            loss_sum += self.loss_fn(out, yb) * len(xb)
            if self.data.task == Task.classification:
                correct += (out.argmax(dim=1) == yb).sum()
        count = max(len(X), 1)
        return {"loss": loss_sum / count, "correct": correct / count}

    def _metric_names(self, split: str, stats: dict[str, float]) -> dict[str, float | None]:
        """loss plus accuracy (classification) or rmse (regression) under `split_` names."""
        if self.data.task == Task.classification:
            return {f"{split}_loss": stats["loss"], f"{split}_accuracy": stats["correct"]}
        rmse = math.sqrt(stats["loss"]) if self.spec.training.loss != Loss.cross_entropy else None
        return {f"{split}_loss": stats["loss"], f"{split}_rmse": rmse}

    def _epoch_record(self, train: dict[str, torch.Tensor], seconds_start: float) -> dict[str, Any]:
        has_val = len(self.data.X_val) > 0
        val = self.evaluate(self.data.X_val, self.data.y_val) if has_val else None
        layers = self.diagnostics.end_epoch()
        keys = list(train)
        values = torch.stack([train[k].to(self.device, torch.float32) for k in keys])
        if val is not None:
            values = torch.cat([values, torch.stack([val["loss"], val["correct"]]).float()])
        read = values.tolist()  # the one host sync of the epoch's scalars
        train_stats = dict(zip(keys, read[: len(keys)], strict=True))
        seconds = time.perf_counter() - seconds_start
        record: dict[str, Any] = {"epoch": self.epoch}
        record.update(self._metric_names("train", train_stats))
        if val is not None:
            record.update(self._metric_names("val", {"loss": read[-2], "correct": read[-1]}))
        else:
            record.update({k.replace("train_", "val_"): None for k in list(record) if k.startswith("train_")})
        if self.spec.generalization.l2 > 0:
            with torch.no_grad():
                record["l2_penalty"] = float(l2_penalty(self.weights, self.spec.generalization.l2))
        has_norm = train_stats["has_norm"] > 0
        record.update(
            {
                "learning_rate": self.optimizer.param_groups[0]["lr"],
                "grad_norm": train_stats["norm_mean"] if has_norm else None,
                "grad_norm_max": train_stats["norm_max"] if has_norm else None,
                "clipped_fraction": train_stats["clipped"] if self.spec.clipping else None,
                "seconds": round(seconds, 6),
                "samples_per_second": round(train_stats["seen"] / seconds, 1) if seconds > 0 else None,
                "layers": layers,
            }
        )
        if self.sequences:  # ‖∂L/∂x‖ at the first and last time step: how far back the error signal travels
            sampled = has_norm and self.spec.training.diagnostics_every > 0
            record["grad_first_step"] = train_stats["grad_first_step"] if sampled else None
            record["grad_last_step"] = train_stats["grad_last_step"] if sampled else None
        return record

    # --------------------------------------------------------------------------------- checkpoints

    def _rng_state(self) -> dict[str, torch.Tensor]:
        state = {"torch": torch.get_rng_state(), "batches": self.batches.get_state()}
        if self.device.type == "cuda":
            state["cuda"] = torch.cuda.get_rng_state(self.device)
        return state

    def _meta(self) -> dict[str, Any]:
        scheduler_state = self.scheduler.state_dict() if self.scheduler is not None else None
        return {
            "spec": self.spec.model_dump(mode="json"),
            "epoch": self.epoch,
            "task": self.data.task.value,
            "input_shape": list(self.data.input_shape),
            "outputs": self.data.outputs,
            "class_labels": self.data.class_labels,
            "feature_names": self.data.feature_names,
            "stopper": self.stopper.state(),
            "scheduler": scheduler_state,
            "best_record": self.best_record,
            "seconds": self.seconds_before + time.perf_counter() - self.started,
            "torch_version": torch.__version__,
        }

    def _save(self, name: str) -> None:
        if self.out_dir is None:
            return
        path = self.out_dir / "checkpoints" / f"{name}.safetensors"
        save_checkpoint(
            path,
            model=self.model,
            scaler=self.data.scaler,
            meta=self._meta(),
            optimizer=self.optimizer,
            rng=self._rng_state(),
        )
        for callback in self.callbacks:
            callback.on_checkpoint(CheckpointInfo(name=name, path=path, epoch=self.epoch))

    def resume(self) -> None:
        """Continue exactly where the `last` checkpoint left off (weights, optimizer, RNG, early stopping)."""
        assert self.out_dir is not None
        path = self.out_dir / "checkpoints" / "last.safetensors"
        if not path.exists():
            return  # nothing to resume from: a fresh start
        tensors, meta = read_checkpoint(path)
        saved = JobSpec.model_validate(meta["spec"]).model_dump(mode="json")
        current = self.spec.model_dump(mode="json")
        saved["training"]["epochs"] = current["training"]["epochs"]  # extending a run is allowed
        if saved != current:
            raise ValueError(
                f"{path} was written for a different spec; start a fresh run instead of --resume"
            )
        self.model.load_state_dict(prefixed(tensors, "model."))
        restore_optimizer(self.optimizer, tensors, meta)
        if self.scheduler is not None and meta["scheduler"] is not None:
            self.scheduler.load_state_dict(meta["scheduler"])
        torch.set_rng_state(tensors["rng.torch"])
        self.batches.set_state(tensors["rng.batches"])
        if "rng.cuda" in tensors and self.device.type == "cuda":
            torch.cuda.set_rng_state(tensors["rng.cuda"], self.device)
        self.stopper.load(meta["stopper"])
        self.epoch, self.best_record = meta["epoch"], meta["best_record"]
        self.seconds_before, self.started = meta["seconds"], time.perf_counter()
        best_path = path.with_name("best.safetensors")
        if best_path.exists():
            self.best_state = prefixed(read_checkpoint(best_path)[0], "model.")
        self._truncate_metrics()

    # ----------------------------------------------------------------------------------------- run

    def _truncate_metrics(self) -> None:
        """Drop metric lines past the resumed epoch, so no epoch is written twice."""
        assert self.out_dir is not None
        path = self.out_dir / "metrics.jsonl"
        if path.exists():
            kept = [line for line in path.read_text().splitlines() if json.loads(line)["epoch"] <= self.epoch]
            path.write_text("".join(line + "\n" for line in kept))

    def _write_record(self, record: dict[str, Any]) -> None:
        if self.out_dir is not None:
            with (self.out_dir / "metrics.jsonl").open("a") as handle:
                handle.write(json.dumps(record) + "\n")
        for callback in self.callbacks:
            callback.on_epoch_end(record)

    def run(self) -> Result:
        """Train until the epochs run out, early stopping fires, or a callback cancels."""
        status, stop_reason, error = "succeeded", "completed all epochs", None
        if self.out_dir is not None:
            self.out_dir.mkdir(parents=True, exist_ok=True)
            (self.out_dir / "spec.json").write_text(self.spec.model_dump_json(indent=2))
            if self.epoch == 0:  # a fresh start: files of an earlier run in this folder are not ours
                (self.out_dir / "metrics.jsonl").unlink(missing_ok=True)
                for stale in (self.out_dir / "checkpoints").glob("*.safetensors"):
                    stale.unlink()
        if self.stopper.should_stop:
            stop_reason = "early stopping had already fired before the resume"
        while self.epoch < self.spec.training.epochs and not self.stopper.should_stop:
            started = time.perf_counter()
            train = self._train_epoch()
            if train is None:
                status, stop_reason = "cancelled", "cancelled"
                break
            self.epoch += 1
            record = self._epoch_record(train, started)
            if not math.isfinite(record["train_loss"]):
                raise TrainingDiverged(
                    f"the training loss became {record['train_loss']} at epoch {self.epoch}: the steps are "
                    f"too large for this network. Try a lower optimizer.learning_rate (now "
                    f"{self.optimizer.param_groups[0]['lr']:g}), gradient clipping (clipping.max_norm: 1.0), "
                    "or normalized inputs (normalization.inputs: zscore)"
                )
            self._step_scheduler(record)
            monitored = record.get(self.stopper.monitor)
            if monitored is None:
                raise DatasetError(f"early stopping monitors {self.stopper.monitor}, which this task lacks")
            improved = self.stopper.update(monitored, self.epoch)
            self.final_record = record
            self._write_record(record)
            if improved:
                self.best_record = record
                self.best_state = {k: v.detach().clone() for k, v in self.model.state_dict().items()}
                self._save("best")
            self._save("last")
            every = self.spec.training.checkpoint_every
            if every and self.epoch % every == 0:
                self._save(f"epoch-{self.epoch:05d}")
            if self.stopper.should_stop:
                stop_reason = (
                    f"early stopping: {self.stopper.monitor} did not improve for "
                    f"{self.stopper.patience} epochs after epoch {self.stopper.best_epoch}"
                )
        stopping = self.spec.generalization.early_stopping
        if stopping and stopping.restore_best and self.best_state is not None:
            self.model.load_state_dict(self.best_state)
        return self._result(status, stop_reason, error)

    def _step_scheduler(self, record: dict[str, Any]) -> None:
        if isinstance(self.scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau):
            watched = record["val_loss"] if record["val_loss"] is not None else record["train_loss"]
            self.scheduler.step(watched)
        elif self.scheduler is not None:
            self.scheduler.step()

    def _result(self, status: str, stop_reason: str, error: str | None) -> Result:
        test = None
        if len(self.data.X_test) > 0 and status != "failed":
            stats = {k: v.item() for k, v in self.evaluate(self.data.X_test, self.data.y_test).items()}
            test = self._metric_names("test", stats)

        def summary(record: dict[str, Any] | None) -> dict[str, Any] | None:
            return {k: v for k, v in record.items() if k != "layers"} if record else None

        return Result(
            status=status,
            epochs_run=self.epoch,
            stopped_early=self.stopper.should_stop,
            stop_reason=stop_reason,
            best_epoch=self.stopper.best_epoch,
            best=summary(self.best_record),
            final=summary(self.final_record),
            test=test,
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
) -> Result:
    """Train the network a spec describes; writes metrics.jsonl, checkpoints and result.json to out_dir."""
    out = Path(out_dir) if out_dir is not None else None
    if resume and out is None:
        raise ValueError("resume needs the out_dir of the run to continue")
    started = time.perf_counter()
    trainer: Trainer | None = None
    try:
        trainer = Trainer(spec, out, callbacks)
        if resume:
            trainer.resume()
        result = trainer.run()
    except (JobFailure, DatasetError, torch.OutOfMemoryError) as failure:
        message = str(failure)
        if isinstance(failure, torch.OutOfMemoryError):
            message = f"out of memory: use a smaller network or batch_size ({failure})"
        result = (
            trainer._result("failed", "failed", message)
            if trainer
            else Result(status="failed", error=message)
        )
        result.seconds = round(time.perf_counter() - started, 3)
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
        (out / "result.json").write_text(json.dumps(result.to_dict(), indent=2))
    return result


def warm_up() -> None:
    """Pay torch's one-time costs (import, kernels, optimizer construction) before the first job."""
    model = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 3))
    optimizer = build_optimizer(Adam(), list(model.parameters()))
    loss = F.cross_entropy(model(torch.randn(16, 4)), torch.randint(0, 3, (16,)))
    loss.backward()
    optimizer.step()
