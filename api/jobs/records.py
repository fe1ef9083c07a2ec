"""Per-epoch records as the training loop writes them, in its key order (JSONB on PostgreSQL sorts keys)."""

from __future__ import annotations

from typing import Any

RECORD_KEYS = (
    "epoch",
    "train_loss",
    "train_accuracy",
    "train_rmse",
    "train_running_loss",
    "train_running_accuracy",
    "train_running_rmse",
    "val_loss",
    "val_accuracy",
    "val_rmse",
    "learning_rate",
    "grad_norm",
    "grad_norm_max",
    "clipped_fraction",
    "seconds",
    "samples_per_second",
)
LAYER_KEYS = (
    "name",
    "grad_norm",
    "activation_mean",
    "activation_std",
    "saturated_fraction",
    "dead_fraction",
    "weight_norm",
    "update_ratio",
)
_RECORD_RANK = {key: rank for rank, key in enumerate(RECORD_KEYS)}
_LAYER_RANK = {key: rank for rank, key in enumerate(LAYER_KEYS)}


def _ordered(values: dict[str, Any], rank: dict[str, int]) -> dict[str, Any]:
    # Known keys in the loop's order, then any others alphabetically; layers always last.
    return dict(
        sorted(values.items(), key=lambda item: (item[0] == "layers", rank.get(item[0], len(rank)), item[0]))
    )


def ordered_record(record: dict[str, Any]) -> dict[str, Any]:
    """The record with its keys (and each layer's) in the training loop's order, whatever the storage."""
    ordered = _ordered(record, _RECORD_RANK)
    layers = ordered.get("layers")
    if isinstance(layers, list):
        ordered["layers"] = [
            _ordered(layer, _LAYER_RANK) if isinstance(layer, dict) else layer for layer in layers
        ]
    return ordered
