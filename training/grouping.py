"""Which jobs can train together as one stacked model (torch-free: the service imports it)."""

from __future__ import annotations

import hashlib
import json
from typing import Any

from training.spec import CNNNetwork, JobSpec, MLPNetwork

# Values a replica keeps to itself in a stacked group: each replica has its own optimizer, schedule,
# clipping, loss term, early stopping, initialization and seed, and its own activation (element-wise:
# the stacked pass applies each replica's to its rows), so these may differ within a group. Everything
# else (data, network, normalization, dropout, batch size, device, diagnostics) shapes the stacked
# forward pass or the batches, and must be the same for every replica.
BATCHABLE_FIELDS = (
    "training.seed",
    "activation",
    "training.epochs",
    "training.checkpoint_every",
    "optimizer",
    "clipping",
    "initialization",
    "generalization.l2",
    "generalization.early_stopping",
)


def can_stack(spec: JobSpec) -> bool:
    """mlp and cnn stack; recurrent networks (fused kernels, the step-by-step layer-norm cell) do not."""
    return isinstance(spec.network, MLPNetwork | CNNNetwork)


def replica_key(spec: JobSpec) -> str | None:
    """Jobs with the same key can train as one replica group; None for a network that cannot stack."""
    if not can_stack(spec):
        return None
    shape: dict[str, Any] = spec.model_dump(mode="json")
    for path in BATCHABLE_FIELDS:
        *parents, last = path.split(".")
        node = shape
        for part in parents:
            node = node.get(part) or {}
        node.pop(last, None)
    return hashlib.sha256(json.dumps(shape, sort_keys=True).encode()).hexdigest()[:16]
