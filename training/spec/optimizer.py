"""Optimizers with their parameters, learning-rate schedules and gradient clipping."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import (
    Discriminator,
    Field,
    Tag,
)

from training.spec.base import SpecModel

LearningRate = Annotated[float, Field(gt=0.0, le=10.0, description="Step size.", examples=[0.01])]
Eps = Annotated[float, Field(gt=0.0, le=1.0, description="Added to denominators for stability.")]
Beta = Annotated[float, Field(ge=0.0, lt=1.0)]


class StepSchedule(SpecModel):
    """Multiply the learning rate by gamma every step_size epochs."""

    type: Literal["step"] = "step"
    step_size: int = Field(10, ge=1, description="Epochs between decays.")
    gamma: float = Field(0.5, gt=0.0, le=1.0, description="Decay factor.")


class CosineSchedule(SpecModel):
    """Cosine annealing from the initial rate down to min_learning_rate over the run's epochs."""

    type: Literal["cosine"] = "cosine"
    min_learning_rate: float = Field(0.0, ge=0.0, description="Rate reached at the last epoch.")


class PlateauSchedule(SpecModel):
    """Multiply the rate by factor when the validation loss has not improved for patience epochs."""

    type: Literal["plateau"] = "plateau"
    factor: float = Field(0.5, gt=0.0, lt=1.0, description="Decay factor.")
    patience: int = Field(5, ge=0, description="Epochs without improvement before decaying.")
    min_learning_rate: float = Field(0.0, ge=0.0, description="Lower bound of the rate.")


Schedule = Annotated[StepSchedule | CosineSchedule | PlateauSchedule, Field(discriminator="type")]


class _OptimizerBase(SpecModel):
    schedule: Schedule | None = Field(
        None, description="Optional per-epoch learning-rate schedule.", examples=[{"type": "cosine"}]
    )


class SGD(_OptimizerBase):
    """Steepest descent: w ← w - lr·g."""

    name: Literal["sgd"] = "sgd"
    learning_rate: LearningRate = 0.01


class Momentum(_OptimizerBase):
    """Steepest descent with (heavy-ball) momentum."""

    name: Literal["momentum"] = "momentum"
    learning_rate: LearningRate = 0.01
    momentum: float = Field(0.9, ge=0.0, lt=1.0, description="Momentum coefficient.")


class Nesterov(_OptimizerBase):
    """Steepest descent with Nesterov momentum."""

    name: Literal["nesterov"] = "nesterov"
    learning_rate: LearningRate = 0.01
    momentum: float = Field(0.9, gt=0.0, lt=1.0, description="Momentum coefficient.")


class Adam(_OptimizerBase):
    """Adam: steps scaled by running estimates of the gradient moments."""

    name: Literal["adam"] = "adam"
    learning_rate: LearningRate = 0.001
    betas: tuple[Beta, Beta] = Field((0.9, 0.999), description="Decay rates of the moment estimates.")
    eps: Eps = 1e-8


class AdamW(_OptimizerBase):
    """Adam with decoupled weight decay."""

    name: Literal["adamw"] = "adamw"
    learning_rate: LearningRate = 0.001
    betas: tuple[Beta, Beta] = Field((0.9, 0.999), description="Decay rates of the moment estimates.")
    eps: Eps = 1e-8
    weight_decay: float = Field(
        0.01,
        ge=0.0,
        le=1.0,
        description="Decoupled weight decay w ← w - lr·weight_decay·w, on the weight matrices only "
        "(the set generalization.l2 covers: not biases, not normalization gains).",
    )


class RMSprop(_OptimizerBase):
    """RMSprop: steps scaled by a running RMS of the gradients."""

    name: Literal["rmsprop"] = "rmsprop"
    learning_rate: LearningRate = 0.001
    alpha: float = Field(0.99, gt=0.0, lt=1.0, description="Smoothing of the squared-gradient average.")
    eps: Eps = 1e-8
    momentum: float = Field(0.0, ge=0.0, lt=1.0, description="Momentum coefficient.")


class Adagrad(_OptimizerBase):
    """Adagrad: steps scaled by the accumulated squared gradients."""

    name: Literal["adagrad"] = "adagrad"
    learning_rate: LearningRate = 0.01
    eps: Eps = 1e-10


Optimizer = Annotated[
    SGD | Momentum | Nesterov | Adam | AdamW | RMSprop | Adagrad, Field(discriminator="name")
]


def named_optimizer(value: Any) -> Any:
    """An optimizer without a name is adam, the default (as a network without a type is an mlp)."""
    return {"name": Adam.model_fields["name"].default, **value} if isinstance(value, dict) else value


class NormClipping(SpecModel):
    """Rescale the gradient so that its global L2 norm (all parameters together) is at most max_norm."""

    max_norm: float = Field(gt=0.0, description="Largest allowed global gradient norm.", examples=[1.0])


class ValueClipping(SpecModel):
    """Clamp every gradient element to [-max_value, max_value]."""

    max_value: float = Field(gt=0.0, description="Largest allowed absolute gradient element.", examples=[0.5])


def _clipping_kind(value: Any) -> str:
    has = value.__contains__ if isinstance(value, dict) else lambda key: hasattr(value, key)
    return "value" if has("max_value") and not has("max_norm") else "norm"


Clipping = Annotated[
    Annotated[NormClipping, Tag("norm")] | Annotated[ValueClipping, Tag("value")],
    Discriminator(_clipping_kind),
]
