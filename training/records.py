"""Typed per-epoch records and run results: defined once, produced by fit(), stored, served and read back."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, SerializerFunctionWrapHandler, model_serializer

RunStatus = Literal["succeeded", "failed", "cancelled"]


class LayerDiagnostics(BaseModel):
    """One weight group's sampled statistics over an epoch (input side first)."""

    model_config = ConfigDict(extra="allow")

    name: str = Field(description="Weight group: `hidden1`, `conv2`, `recurrent1`, ..., `output`.")
    grad_norm: float | None = Field(None, description="Mean ‖∂L/∂W‖ over the sampled steps, before clipping.")
    activation_mean: float | None = Field(None, description="Mean of the group's outputs.")
    activation_std: float | None = Field(None, description="Standard deviation of the group's outputs.")
    saturated_fraction: float | None = Field(None, description="Share of units in a saturated region.")
    dead_fraction: float | None = Field(None, description="Share of units that never activated.")
    weight_norm: float | None = Field(None, description="‖W‖ at the end of the epoch.")
    update_ratio: float | None = Field(None, description="‖ΔW‖ over the epoch divided by ‖W‖ at its start.")


class EpochRecord(BaseModel):
    """One epoch's metrics, as the loop measures them: absent where a metric does not apply to the run,
    null where it applies but was not measured that epoch."""

    model_config = ConfigDict(extra="allow")

    epoch: int = Field(description="1-based epoch number.")
    train_loss: float | None = None
    train_accuracy: float | None = None
    train_rmse: float | None = None
    val_loss: float | None = None
    val_accuracy: float | None = None
    val_rmse: float | None = None
    l2_penalty: float | None = Field(None, description="The L2 term added to the loss (when l2 > 0).")
    learning_rate: float | None = None
    grad_norm: float | None = Field(None, description="Mean global gradient norm before clipping.")
    grad_norm_max: float | None = Field(None, description="Largest global gradient norm before clipping.")
    clipped_fraction: float | None = Field(None, description="Share of steps where clipping acted.")
    grad_first_step: float | None = Field(None, description="Sequences: mean ‖∂L/∂x‖ at the first step.")
    grad_last_step: float | None = Field(None, description="Sequences: mean ‖∂L/∂x‖ at the last step.")
    seconds: float | None = None
    samples_per_second: float | None = None
    layers: list[LayerDiagnostics] = Field(default_factory=list)

    @model_serializer(mode="wrap")
    def _measured_only(self, handler: SerializerFunctionWrapHandler):
        # no return annotation on purpose: pydantic then documents the fields, not "any"
        # A key is absent when the metric does not apply to the run (train_rmse of a classifier,
        # l2_penalty without L2) and null when it applies but was not measured: dumps keep that apart.
        return {key: value for key, value in handler(self).items() if key in self.model_fields_set}


class RunResult(BaseModel):
    """The outcome of fit(), written as result.json and stored with the job."""

    status: RunStatus
    epochs_run: int = 0
    stopped_early: bool = False
    stop_reason: str | None = None
    best_epoch: int | None = None
    best: EpochRecord | None = None
    final: EpochRecord | None = None
    test: dict[str, float | None] | None = None
    parameters: int = 0
    seconds: float = 0.0
    device: str = "cpu"
    torch_version: str = ""
    warnings: list[str] = Field(default_factory=list)
    error: str | None = None


def is_maximized(metric: str) -> bool:
    """Accuracy-like metrics improve upwards; losses, rmse and everything else downwards."""
    return metric.endswith("accuracy")
