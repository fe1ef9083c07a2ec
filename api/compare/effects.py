"""Effects of swept fields over a full grid: main effects and two-way interactions with 95% CIs.

The linear model is the full factorial over the grid (one mean per cell, one residual variance pooled over
the per-seed results of every cell). Each effect is a contrast of cell means, every cell weighted equally:
a main effect is the mean over cells at a level minus the mean at the field's first level (for a two-level
field: mean(high) − mean(low)); an interaction is the difference of differences, e.g. (batch − none) with
relu minus (batch − none) with sigmoid. Its 95% CI uses t with N − cells degrees of freedom.
"""

from __future__ import annotations

import itertools
import json
import math
from collections.abc import Hashable, Sequence
from typing import Any

import numpy as np
from pydantic import BaseModel, Field

from api.compare.stats import finite, t_critical


class Effect(BaseModel):
    """One contrast of the grid's cell means."""

    term: str = Field(examples=["activation × normalization.layers"])
    fields: list[str] = Field(
        description="The swept fields of the term (one: main effect; two: interaction)."
    )
    contrast: str = Field(examples=["(relu − sigmoid) × (batch − none)"])
    levels: dict[str, list[Any]] = Field(
        description="Per field, [reference level, level]: the effect is level minus reference.",
        examples=[{"activation": ["sigmoid", "relu"]}],
    )
    estimate: float
    se: float | None = Field(description="Standard error; null without residual degrees of freedom.")
    ci_low: float | None = Field(description="95% CI (Student t, residual df).")
    ci_high: float | None


class Effects(BaseModel):
    """Effects of the swept fields, or why there are none."""

    fields: list[str]
    levels: dict[str, list[Any]] = Field(description="Each field's levels, the first being the reference.")
    complete: bool = Field(description="Every combination of levels has at least one finite result.")
    reason: str | None = Field(description="Why effects or their CIs are missing.")
    n: int = Field(description="Per-seed results in the model.")
    residual_df: int
    residual_std: float | None = Field(description="Pooled within-cell standard deviation.")
    effects: list[Effect]


def _label(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value, sort_keys=True)


def _key(value: Any) -> Hashable:
    return json.dumps(value, sort_keys=True)


def _weights(levels: int, level: int | None) -> np.ndarray:
    """One field's weights over its levels: level − reference, or the plain average outside the term."""
    if level is None:
        return np.full(levels, 1 / levels)
    weights = np.zeros(levels)
    weights[level], weights[0] = 1.0, -1.0
    return weights


def grid_effects(
    rows: Sequence[tuple[Sequence[Any], float]], fields: Sequence[str], levels: Sequence[Sequence[Any]]
) -> Effects:
    """Main effects and two-way interactions from per-seed `rows` of (level per field, value)."""
    shape = tuple(len(values) for values in levels)
    index = [{_key(value): position for position, value in enumerate(values)} for values in levels]
    cells: dict[tuple[int, ...], list[float]] = {}
    for row_levels, value in rows:
        cell = tuple(lookup[_key(level)] for lookup, level in zip(index, row_levels, strict=True))
        cells.setdefault(cell, []).append(value)
    data = {cell: finite(values) for cell, values in cells.items()}
    counts = np.zeros(shape)
    means = np.zeros(shape)
    squares = 0.0
    for cell, values in data.items():
        if len(values):
            counts[cell], means[cell] = len(values), float(np.mean(values))
            squares += float(np.sum((values - means[cell]) ** 2))
    total, filled = int(counts.sum()), int(np.count_nonzero(counts))
    residual_df = total - filled
    variance = squares / residual_df if residual_df > 0 else None
    result = Effects(
        fields=list(fields),
        levels={field: list(values) for field, values in zip(fields, levels, strict=True)},
        complete=filled == math.prod(shape),
        reason=None,
        n=total,
        residual_df=residual_df,
        residual_std=None if variance is None else math.sqrt(variance),
        effects=[],
    )
    if not result.complete:
        return result.model_copy(
            update={"reason": f"not a full grid: {filled} of {math.prod(shape)} combinations have results"}
        )
    effects = []
    critical = t_critical(residual_df) if variance is not None else None
    terms = [(i,) for i in range(len(fields))] + list(itertools.combinations(range(len(fields)), 2))
    for term in terms:
        for chosen in itertools.product(*(range(1, shape[i]) for i in term)):
            picked = dict(zip(term, chosen, strict=True))
            weights = _weights(shape[0], picked.get(0))
            for axis in range(1, len(fields)):
                weights = np.multiply.outer(weights, _weights(shape[axis], picked.get(axis)))
            estimate = float(np.sum(weights * means))
            se = None if variance is None else math.sqrt(variance * float(np.sum(weights**2 / counts)))
            half = None if se is None or critical is None else critical * se
            contrasts = [
                f"{_label(levels[i][level])} − {_label(levels[i][0])}" for i, level in picked.items()
            ]
            effects.append(
                Effect(
                    term=" × ".join(fields[i] for i in term),
                    fields=[fields[i] for i in term],
                    contrast=contrasts[0] if len(term) == 1 else " × ".join(f"({c})" for c in contrasts),
                    levels={fields[i]: [levels[i][0], levels[i][level]] for i, level in picked.items()},
                    estimate=estimate,
                    se=se,
                    ci_low=None if half is None else estimate - half,
                    ci_high=None if half is None else estimate + half,
                )
            )
    reason = None if variance is not None else "no CIs: every combination has a single result"
    return result.model_copy(update={"effects": effects, "reason": reason})
