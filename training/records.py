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
    dead_fraction: float | None = Field(
        None,
        description="ReLU-type units: share of the layer's units whose net input is ≤ 0 for every example of "
        "the training sample (eval mode, end of epoch): units that no example activates.",
    )
    weight_norm: float | None = Field(None, description="‖W‖ at the end of the epoch.")
    update_ratio: float | None = Field(None, description="‖ΔW‖ over the epoch divided by ‖W‖ at its start.")


class EpochRecord(BaseModel):
    """One epoch's metrics, as the loop measures them: absent where a metric does not apply to the run,
    null where it applies but was not measured that epoch."""

    model_config = ConfigDict(extra="allow")

    epoch: int = Field(description="1-based epoch number.")
    train_loss: float | None = Field(
        None,
        description="Loss on the training sample (the training split, or 10,000 of its rows fixed per run) "
        "at the end of the epoch, in eval mode exactly like val_loss: val_loss - train_loss is the "
        "generalization gap.",
    )
    train_accuracy: float | None = Field(None, description="Accuracy on the training sample ")
    train_rmse: float | None = Field(None, description="RMSE on the training sample (original units).")
    train_running_loss: float | None = Field(
        None,
        description="Mean loss of the epoch's training steps, in training mode (dropout on, batch "
        "statistics) while the weights moved: what the optimizer saw, not comparable with val_loss.",
    )
    train_running_accuracy: float | None = Field(None, description="Accuracy of the training steps, running.")
    train_running_rmse: float | None = Field(None, description="RMSE of the training steps, running.")
    val_loss: float | None = Field(None, description="Loss on the validation split, eval mode.")
    val_accuracy: float | None = Field(None, description="Accuracy on the validation split, eval mode.")
    val_rmse: float | None = Field(None, description="RMSE on the validation split (original units).")
    l2_penalty: float | None = Field(None, description="The L2 term added to the loss (when l2 > 0).")
    learning_rate: float | None = None
    grad_norm: float | None = Field(
        None, description="Mean global gradient norm ‖∂L/∂θ‖ before clipping, over every step of the epoch."
    )
    grad_norm_max: float | None = Field(
        None, description="Largest global gradient norm before clipping, over every step of the epoch."
    )
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
    test: dict[str, float | None] | None = Field(
        None, description="test_loss and test_accuracy or test_rmse, measured on model_checkpoint's weights."
    )
    model_checkpoint: Literal["best", "last"] | None = Field(
        None,
        description="The checkpoint holding the weights the run ended with, which `test` measured: `best` "
        "when early stopping restored the best epoch, else `last`. Predictions use it unless told otherwise.",
    )
    unstratified_classes: list[str] = Field(
        default_factory=list,
        description="Classes the splits could not stratify: a class with a single example stays in the "
        "training split; with fewer held-out rows than classes no split is stratified.",
    )
    parameters: int = 0
    seconds: float = 0.0
    device: str = "cpu"
    torch_version: str = ""
    warnings: list[str] = Field(default_factory=list)
    error: str | None = None


def is_maximized(metric: str) -> bool:
    """Accuracy-like metrics improve upwards; losses, rmse and everything else downwards."""
    return metric.endswith("accuracy")
