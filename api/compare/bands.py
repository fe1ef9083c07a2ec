"""Per-epoch curve bands of a seed group: mean, 95% CI and n at each exact epoch.

No bucketing: a band's point at epoch e uses exactly the runs that recorded epoch e (runs that stopped
early drop out, and n says so). Downsampling picks one set of epochs for every group, so bands stay aligned.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Sequence

import numpy as np
from pydantic import BaseModel, Field

from api.compare.stats import t_critical

Run = tuple[Sequence[int], Sequence[float | None]]  # one run's (epochs, values), None for missing


class Band(BaseModel):
    """One field of one group, epoch by epoch (parallel lists)."""

    epochs: list[int]
    mean: list[float]
    ci_low: list[float | None] = Field(description="95% Student-t CI of the mean; null where n < 2.")
    ci_high: list[float | None]
    n: list[int] = Field(description="Runs with a finite value at this epoch.")


def aligned_epochs(runs: Iterable[Run], points: int | None) -> list[int]:
    """Every epoch any run recorded, or at most `points` of them evenly spaced (first and last kept)."""
    epochs = np.unique(np.fromiter(itertools.chain.from_iterable(e for e, _v in runs), np.int64))
    if points is not None and len(epochs) > points:
        epochs = epochs[np.unique(np.round(np.linspace(0, len(epochs) - 1, max(points, 2))).astype(int))]
    return [int(epoch) for epoch in epochs]


def band(runs: Sequence[Run], epochs: Sequence[int]) -> Band:
    """The band of `runs` at `epochs` (values at other epochs are ignored), without epochs where n = 0."""
    kept = np.asarray(epochs, dtype=np.int64)
    table = np.full((len(runs), len(kept)), np.nan)
    lengths = [len(run_epochs) for run_epochs, _values in runs]
    if kept.size and sum(lengths):
        # All runs in one go: a Python loop over a thousand runs costs more than the statistics.
        at = np.fromiter(itertools.chain.from_iterable(e for e, _v in runs), np.int64, sum(lengths))
        values = np.array(list(itertools.chain.from_iterable(v for _e, v in runs)), dtype=float)
        rows = np.repeat(np.arange(len(runs)), lengths)
        columns = np.minimum(np.searchsorted(kept, at), len(kept) - 1)
        hit = kept[columns] == at
        table[rows[hit], columns[hit]] = values[hit]
    table[~np.isfinite(table)] = np.nan
    n = np.sum(~np.isnan(table), axis=0)
    present = n > 0
    table, n, kept = table[:, present], n[present], kept[present]
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = np.nanmean(table, axis=0) if len(kept) else np.zeros(0)
        deviations = np.where(np.isnan(table), 0.0, table - mean)
        std = np.sqrt(np.sum(deviations**2, axis=0) / (n - 1))
        critical = np.array([t_critical(int(df)) for df in np.maximum(n - 1, 1)])
        half = critical * std / np.sqrt(n)
    low = [float(m - h) if count >= 2 else None for m, h, count in zip(mean, half, n, strict=True)]
    high = [float(m + h) if count >= 2 else None for m, h, count in zip(mean, half, n, strict=True)]
    return Band(epochs=kept.tolist(), mean=mean.tolist(), ci_low=low, ci_high=high, n=n.tolist())


def bands(groups: Sequence[Sequence[Run]], points: int | None) -> list[Band]:
    """One band per group over the same epochs: at most `points` of the epochs any run recorded."""
    epochs = aligned_epochs((run for runs in groups for run in runs), points)
    return [band(runs, epochs) for runs in groups]
