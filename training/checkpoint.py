"""Checkpoints: one safetensors file holding weights, optimizer and RNG tensors, with JSON metadata.

Nothing here ever unpickles: a checkpoint a user uploads or downloads is data, not code.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors import safe_open
from safetensors.torch import save_file

from training.data import Scaler, scale_inputs
from training.network import Network, build_network
from training.spec import InputScaling, JobSpec, Task

FORMAT = "trainctl-checkpoint/1"


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


def save_checkpoint(
    path: Path,
    *,
    model: torch.nn.Module,
    scaler: Scaler,
    meta: dict[str, Any],
    optimizer: torch.optim.Optimizer | None = None,
    rng: dict[str, torch.Tensor] | None = None,
) -> None:
    """Write atomically (temp file, then rename) so a reader never sees half a checkpoint."""
    tensors = {f"model.{k}": v for k, v in model.state_dict().items()}
    tensors["scaler.shift"], tensors["scaler.scale"] = scaler.shift, scaler.scale
    meta = {**meta, "scaler": scaler.kind.value}
    if optimizer is not None:
        optim_tensors, meta["optimizer"] = _flatten_optimizer(optimizer.state_dict())
        tensors.update(optim_tensors)
    for name, state in (rng or {}).items():
        tensors[f"rng.{name}"] = state
    tensors = {k: v.detach().to("cpu").clone().contiguous() for k, v in tensors.items()}
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(".partial")
    save_file(tensors, str(partial), metadata={"format": FORMAT, "meta": json.dumps(meta)})
    os.replace(partial, path)


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
    """Load the optimizer state saved by save_checkpoint."""
    optimizer.load_state_dict(_unflatten_optimizer(tensors, meta["optimizer"]))


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
    class_labels: list[str] | None

    def predict(self, inputs: Any) -> dict[str, Any]:
        """Classes and probabilities (classification) or values (regression) for raw, unscaled inputs."""
        X = torch.as_tensor(np.asarray(inputs, dtype=np.float32))
        if X.ndim >= 1 and X[0].numel() == math.prod(self.input_shape) and len(X):
            X = X.reshape(len(X), *self.input_shape)  # images may come as flat rows of pixels
        if tuple(X.shape[1:]) != self.input_shape:
            expected = ", ".join(map(str, ["rows", *self.input_shape]))
            raise ValueError(f"inputs must have shape ({expected}); got {tuple(X.shape)}")
        with torch.inference_mode():
            out = self.module(scale_inputs(self.scaler, X, self.input_shape))
        if self.task == Task.classification:
            probabilities = torch.softmax(out, dim=1)
            indices = probabilities.argmax(dim=1).tolist()
            labels = self.class_labels or [str(i) for i in range(self.outputs)]
            return {"classes": [labels[i] for i in indices], "probabilities": probabilities.tolist()}
        return {"values": out.tolist()}


def load_model(path: str | Path) -> TrainedModel:
    """Rebuild the network of a checkpoint in eval mode (batch norm uses its smoothed statistics)."""
    tensors, meta = read_checkpoint(Path(path))
    spec = JobSpec.model_validate(meta["spec"])
    input_shape = tuple(meta["input_shape"])
    module = build_network(spec, input_shape, meta["outputs"])
    module.load_state_dict(prefixed(tensors, "model."))
    module.eval()
    scaler = Scaler(InputScaling(meta["scaler"]), tensors["scaler.shift"], tensors["scaler.scale"])
    return TrainedModel(
        spec=spec,
        module=module,
        scaler=scaler,
        task=Task(meta["task"]),
        input_shape=input_shape,
        outputs=meta["outputs"],
        epoch=meta["epoch"],
        class_labels=meta.get("class_labels"),
    )
