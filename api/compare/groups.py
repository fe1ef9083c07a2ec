"""Seed groups: jobs that differ only in training.seed, their mean ± std, and the best group."""

from __future__ import annotations

import json
import math
import statistics
from collections.abc import Sequence
from typing import Any

from api.compare.query import Mode
from api.compare.schemas import ComparedJob, CompareGroup, MetricStats

SEED_PATH = "training.seed"


def canonical(value: Any) -> str:
    """Canonical JSON of a value: equal values, equal text."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"))


def mean_std(values: Sequence[float]) -> MetricStats:
    """Mean and sample standard deviation (n - 1), 0 for a single value."""
    if not values:
        return MetricStats(mean=None, std=None, n=0)
    std = statistics.stdev(values) if len(values) >= 2 else 0.0
    return MetricStats(mean=statistics.fmean(values), std=std, n=len(values))


def finite_number(value: Any) -> float | None:
    """The value as a float when it is a finite number (not a bool), else None."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value) if math.isfinite(value) else None


def group_jobs(jobs: list[ComparedJob], *, metric: str, with_target: bool = False) -> list[CompareGroup]:
    """Jobs grouped by their differing fields without the seed, in order of first appearance.

    With a target, epochs_to_target is summarized over the jobs that reached it (its n says how many).
    """
    members: dict[str, tuple[dict[str, Any], list[ComparedJob]]] = {}
    for job in jobs:
        key = {path: value for path, value in job.differs.items() if path != SEED_PATH}
        members.setdefault(canonical(key), (key, []))[1].append(job)
    groups = []
    for key, group in members.values():
        names = [metric, *dict.fromkeys(name for job in group for name in (job.test or {}))]
        extra = ["seconds", "epochs_to_target"] if with_target else ["seconds"]
        values: dict[str, list[float]] = {name: [] for name in [*names, *extra]}
        for job in group:
            sources = {
                metric: getattr(job.best, metric, None),
                "seconds": job.seconds,
                "epochs_to_target": job.epochs_to_target,
                **(job.test or {}),
            }
            for name in values:
                number = finite_number(sources.get(name))
                if number is not None:
                    values[name].append(number)
        groups.append(
            CompareGroup(
                key=key,
                job_ids=[job.id for job in group],
                n=len(group),
                metrics={name: mean_std(found) for name, found in values.items()},
            )
        )
    return groups


def pick_best(groups: list[CompareGroup], *, metric: str, mode: Mode) -> tuple[int | None, bool | None]:
    """(index of the best group by its mean metric, whether its mean ± std overlaps the runner-up's)."""
    scored = [
        (index, stats)
        for index, group in enumerate(groups)
        if (stats := group.metrics.get(metric)) is not None and stats.mean is not None
    ]
    if not scored:
        return None, None
    sign = 1.0 if mode == "min" else -1.0
    scored.sort(key=lambda item: sign * (item[1].mean or 0.0))
    best_index, best = scored[0]
    if len(scored) < 2:
        return best_index, None
    runner_up = scored[1][1]
    assert best.mean is not None and runner_up.mean is not None
    overlap = abs(best.mean - runner_up.mean) <= (best.std or 0.0) + (runner_up.std or 0.0)
    return best_index, overlap
