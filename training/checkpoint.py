"""Checkpoints: one safetensors file holding weights, optimizer and RNG tensors, with JSON metadata.

Nothing here ever unpickles: a checkpoint a user uploads or downloads is data, not code.
"""

from __future__ import annotations

import json
import math
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors import safe_open
from safetensors.numpy import save_file as save_numpy
from safetensors.torch import save_file

from training.callbacks import Callback, EarlyStopper
from training.data import Scaler, scale_inputs
from training.network import Network, build_network
from training.records import EpochRecord
from training.spec import InputScaling, JobSpec, Task
from training.tabular import ClassLabel

FORMAT = "trainctl-checkpoint/1"
FLOAT32_MAX = float(np.finfo(np.float32).max)


def _flatten_optimizer(state: dict[str, Any]) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Split an optimizer state_dict into tensors (for safetensors) and plain values (for JSON)."""
    tensors: dict[str, torch.Tensor] = {}
    plain: dict[str, dict[str, Any]] = {}
    for index, values in state["state"].items():
        for key, value in values.items():
            if isinstance(value, torch.Tensor):
                tensors[f"optim.{index}.{key}"] = value
            else:
                plain.setdefault(str(index), {})[key] = value
    return tensors, {"param_groups": state["param_groups"], "state": plain}


def _unflatten_optimizer(tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> dict[str, Any]:
    """Inverse of _flatten_optimizer."""
    state: dict[int, dict[str, Any]] = {int(i): dict(values) for i, values in meta["state"].items()}
    for name, tensor in tensors.items():
        if name.startswith("optim."):
            _, index, key = name.split(".", 2)
            state.setdefault(int(index), {})[key] = tensor
    return {"state": state, "param_groups": meta["param_groups"]}


@dataclass
class Contents:
    """What one checkpoint file holds, taken at one moment (its tensors are copies)."""

    epoch: int
    tensors: dict[str, torch.Tensor]
    meta: dict[str, Any]


def checkpoint_contents(
    *,
    model: torch.nn.Module,
    scaler: Scaler,
    meta: dict[str, Any],
    optimizer: torch.optim.Optimizer | None = None,
    rng: dict[str, torch.Tensor] | None = None,
    targets: Scaler | None = None,
) -> Contents:
    """Weights, optimizer, RNG and scaling as they are now, copied (training may go on before the write)."""
    tensors = {f"model.{k}": v for k, v in model.state_dict().items()}
    tensors["scaler.shift"], tensors["scaler.scale"] = scaler.shift, scaler.scale
    meta = {**meta, "scaler": scaler.kind.value, "target_scaler": targets.kind.value if targets else None}
    if targets is not None:
        tensors["target_scaler.shift"], tensors["target_scaler.scale"] = targets.shift, targets.scale
    if optimizer is not None:
        optim_tensors, meta["optimizer"] = _flatten_optimizer(optimizer.state_dict())
        tensors.update(optim_tensors)
    for name, state in (rng or {}).items():
        tensors[f"rng.{name}"] = state
    tensors = {k: v.detach().to("cpu").clone().contiguous() for k, v in tensors.items()}
    return Contents(epoch=meta["epoch"], tensors=tensors, meta=meta)


def write_checkpoint(path: Path, contents: Contents) -> None:
    """Write atomically (temp file, then rename) so a reader never sees half a checkpoint."""
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(".partial")
    metadata = {"format": FORMAT, "meta": json.dumps(contents.meta)}
    tensors = contents.tensors
    if any(t.dtype == torch.bfloat16 for t in tensors.values()):  # numpy has no bfloat16
        save_file(tensors, str(partial), metadata=metadata)
    else:  # the same bytes, without safetensors.torch's per-tensor checks (a third of a small save)
        save_numpy({k: t.numpy() for k, t in tensors.items()}, partial, metadata)
    os.replace(partial, path)


def link_atomically(source: Path, target: Path) -> bool:
    """Give `source` the name `target` as well (a hard link, swapped in atomically through a partial
    name); False where it cannot be linked (another file system, or one without hard links)."""
    partial = target.with_name(f"{target.name}.partial")
    try:
        partial.unlink(missing_ok=True)
        os.link(source, partial)
    except OSError:
        return False
    os.replace(partial, target)
    partial.unlink(missing_ok=True)  # a rename onto a name of the same file leaves both names
    return True


def read_checkpoint(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """All tensors and the metadata of a checkpoint file."""
    with safe_open(str(path), framework="pt") as handle:
        header = handle.metadata() or {}
        if header.get("format") != FORMAT:
            raise ValueError(f"{path} is not a trainctl checkpoint (format {header.get('format')!r})")
        tensors = {key: handle.get_tensor(key) for key in handle.keys()}  # noqa: SIM118 (not a dict)
    return tensors, json.loads(header["meta"])


def prefixed(tensors: dict[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    """The tensors under `prefix.`, with the prefix removed."""
    return {k.removeprefix(prefix): v for k, v in tensors.items() if k.startswith(prefix)}


def restore_optimizer(optimizer: torch.optim.Optimizer, tensors: dict[str, torch.Tensor], meta: dict) -> None:
    """Load the optimizer state a checkpoint holds."""
    optimizer.load_state_dict(_unflatten_optimizer(tensors, meta["optimizer"]))


def rng_state(device: torch.device, batches: torch.Generator) -> dict[str, torch.Tensor]:
    """Every random number generator a run draws from: torch's, the batch order's, CUDA's."""
    state = {"torch": torch.get_rng_state(), "batches": batches.get_state()}
    if device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(device)
    return state


def restore_rng(tensors: dict[str, torch.Tensor], device: torch.device, batches: torch.Generator) -> None:
    """Inverse of rng_state (from a checkpoint's `rng.` tensors)."""
    torch.set_rng_state(tensors["rng.torch"])
    batches.set_state(tensors["rng.batches"])
    if "rng.cuda" in tensors and device.type == "cuda":
        torch.cuda.set_rng_state(tensors["rng.cuda"], device)


def check_resumable(path: Path, meta: dict[str, Any], spec: JobSpec) -> None:
    """A checkpoint resumes only the spec that wrote it; extending the epochs is allowed."""
    saved = JobSpec.model_validate(meta["spec"]).model_dump(mode="json")
    current = spec.model_dump(mode="json")
    saved["training"]["epochs"] = current["training"]["epochs"]
    if saved != current:
        raise ValueError(f"{path} was written for a different spec; start a fresh run instead of --resume")


def callback_states(meta: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The callbacks' saved states by state_key (checkpoints written before callbacks kept their own
    state hold the stopper's and the best record under older keys)."""
    if "callbacks" in meta:
        return dict(meta["callbacks"])
    return {"EarlyStopper": meta["stopper"], "CheckpointWriter": {"best_record": meta["best_record"]}}


class CheckpointWriter(Callback):
    """Keeps `best` (when the stopper saw an improvement), `last`, and `epoch-N` every `every` epochs.

    With `seconds` > 0, `best` and `last` are written together at most that often, and when the run
    ends or stops (`flush`): a small network's epoch can take less time than writing its checkpoint.
    Meanwhile the newest epoch's checkpoint (and the best one) wait in memory, so the files always
    belong to one moment, a run cancelled or handed back still resumes from its last finished epoch,
    and only a killed one redoes up to those seconds.
    """

    def __init__(
        self,
        folder: Path | None,
        save: Callable[[str, Contents | None], None],
        contents: Callable[[], Contents],
        stopper: EarlyStopper,
        every: int | None,
        model: torch.nn.Module,
        keep_best: bool = True,
        seconds: float = 0.0,
    ) -> None:
        self.folder = folder  # None: keep the best weights in memory only
        self.keep_best = keep_best  # copy the best weights in memory (for early stopping's restore_best)
        self.save = save
        self.contents = contents
        self.stopper = stopper
        self.every = every
        self.model = model
        self.seconds = seconds
        self.written = time.monotonic()  # when best and last were last written
        self.pending_best: Contents | None = None  # epochs not written yet
        self.pending_last: Contents | None = None
        self.best_record: EpochRecord | None = None
        self.best_weights: dict[str, torch.Tensor] | None = None

    def on_epoch_end(self, record: EpochRecord) -> None:
        """Write this epoch's checkpoints, or keep them for later (after the stopper has seen the record)."""
        periodic = bool(self.every and record.epoch % self.every == 0)
        if self.stopper.improved:
            self.best_record = record
            if self.keep_best:
                self.best_weights = {k: v.detach().clone() for k, v in self.model.state_dict().items()}
        if self.folder is None:
            return
        if not periodic and time.monotonic() - self.written < self.seconds:
            self.pending_last = self.contents()
            self.pending_best = self.pending_last if self.stopper.improved else self.pending_best
            return
        if self.stopper.improved:
            self.pending_best = None
            self.save("best", None)
        self._write(self.pending_best, None)
        if periodic:
            self.save(f"epoch-{record.epoch:05d}", None)

    def flush(self) -> None:
        """Write the checkpoints waiting in memory (the run ends or stops)."""
        if self.pending_last is not None:
            self._write(self.pending_best, self.pending_last)

    def _write(self, best: Contents | None, last: Contents | None) -> None:
        """`best` when one waits, then `last` (None: of this moment)."""
        if best is not None:
            self.save("best", best)
        self.save("last", last)
        self.pending_best = self.pending_last = None
        self.written = time.monotonic()

    def state_dict(self) -> dict[str, Any]:
        """The best epoch's record (its weights are in best.safetensors)."""
        return {"best_record": self.best_record.model_dump(mode="json") if self.best_record else None}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore the best record, and the best weights from best.safetensors."""
        best = state["best_record"]
        self.best_record = EpochRecord.model_validate(best) if best is not None else None
        path = self.folder / "best.safetensors" if self.folder else None
        if self.keep_best and path is not None and path.exists():
            self.best_weights = prefixed(read_checkpoint(path)[0], "model.")


@dataclass
class TrainedModel:
    """A trained network with its input scaling, ready to predict."""

    spec: JobSpec
    module: Network
    scaler: Scaler
    task: Task
    input_shape: tuple[int, ...]
    outputs: int
    epoch: int
    class_labels: list[ClassLabel] | None
    targets: Scaler | None = None  # the network predicts regression targets in these scaled units

    def predict(self, inputs: Any) -> dict[str, Any]:
        """Classes and probabilities (classification) or values (regression) for raw, unscaled inputs."""
        raw = np.asarray(inputs, dtype=np.float64)
        too_large = np.flatnonzero(~(np.abs(raw.reshape(len(raw), -1)) <= FLOAT32_MAX).all(axis=1))
        if raw.ndim >= 1 and len(too_large):
            raise ValueError(
                f"rows {_first_rows(too_large)} hold values that are not finite float32 numbers "
                f"(beyond ±{FLOAT32_MAX:.3g}); this network computes in float32"
            )
        X = torch.as_tensor(raw.astype(np.float32))
        if X.ndim >= 1 and X[0].numel() == math.prod(self.input_shape) and len(X):
            X = X.reshape(len(X), *self.input_shape)  # images may come as flat rows of pixels
        if tuple(X.shape[1:]) != self.input_shape:
            expected = ", ".join(map(str, ["rows", *self.input_shape]))
            raise ValueError(f"inputs must have shape ({expected}); got {tuple(X.shape)}")
        with torch.inference_mode():
            out = self.module(scale_inputs(self.scaler, X, self.input_shape))
        overflowed = torch.nonzero(~torch.isfinite(out).all(dim=1)).flatten().numpy()
        if len(overflowed):
            raise ValueError(
                f"rows {_first_rows(overflowed)} overflow the network (its outputs are not finite): "
                "their values are far outside the range of the training data"
            )
        if self.task == Task.classification:
            probabilities = torch.softmax(out, dim=1)
            indices = probabilities.argmax(dim=1).tolist()
            labels: list[ClassLabel] = self.class_labels or list(range(self.outputs))
            return {
                "classes": [labels[i] for i in indices],
                "probabilities": probabilities.tolist(),
                "class_labels": labels,  # the class of each probability column
            }
        return {"values": (self.targets.invert(out) if self.targets is not None else out).tolist()}


def _first_rows(indices: np.ndarray, shown: int = 5) -> str:
    """Row indices as a person reads them: the first few, then how many more."""
    listed = ", ".join(str(int(index)) for index in indices[:shown])
    return listed + (f" (and {len(indices) - shown} more)" if len(indices) > shown else "")


def load_model(path: str | Path) -> TrainedModel:
    """Rebuild the network of a checkpoint in eval mode (batch norm uses its smoothed statistics)."""
    tensors, meta = read_checkpoint(Path(path))
    spec = JobSpec.model_validate(meta["spec"])
    input_shape = tuple(meta["input_shape"])
    module = build_network(spec, input_shape, meta["outputs"])
    module.load_state_dict(prefixed(tensors, "model."))
    module.eval()
    scaler = Scaler(InputScaling(meta["scaler"]), tensors["scaler.shift"], tensors["scaler.scale"])
    targets = None
    if meta.get("target_scaler"):  # absent from checkpoints written before targets were scaled
        shift, scale = tensors["target_scaler.shift"], tensors["target_scaler.scale"]
        targets = Scaler(InputScaling(meta["target_scaler"]), shift, scale)
    return TrainedModel(
        spec=spec,
        module=module,
        scaler=scaler,
        task=Task(meta["task"]),
        input_shape=input_shape,
        outputs=meta["outputs"],
        epoch=meta["epoch"],
        class_labels=meta.get("class_labels"),
        targets=targets,
    )
