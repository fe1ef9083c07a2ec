"""A comparison's statistics from its seed groups: the best group, tests, effects, bands and warnings.

Only succeeded jobs count (a running job's best epoch is not its result; a failed one has none); the
others are excluded and counted in `warnings`. No FastAPI and no database: plain values in, models out.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from pydantic import BaseModel, Field

from api.compare.bands import Band, Run, aligned_epochs, band
from api.compare.effects import Effects, grid_effects
from api.compare.stats import Mode, PairTest, Sample, best_vs_others, pick_best, summarize

SUCCEEDED = "succeeded"
MIN_SEEDS_TO_TRUST = 3


class CompareWarning(BaseModel):
    """Something that limits what the comparison can say."""

    kind: Literal["too_few_seeds", "unswept_fields", "excluded_jobs"]
    message: str
    groups: list[int] = Field(description="Indexes in `groups` it concerns.")


@dataclass(frozen=True)
class Member:
    """One job of a group, as the statistics see it."""

    status: str
    seed: int | None
    value: float | None  # the compared metric at the job's best epoch
    curves: dict[str, Run] = field(default_factory=dict)  # field: (epochs, values)


@dataclass(frozen=True)
class GroupInput:
    """A seed group: its differing fields, its data identity and its jobs."""

    key: dict[str, Any]
    split: str | None  # canonical dataset settings: equal strings, same split for the same seed
    members: list[Member]

    def finished(self) -> list[Member]:
        """The members that count: succeeded jobs."""
        return [member for member in self.members if member.status == SUCCEEDED]


@dataclass(frozen=True)
class Analysis:
    best_group: int | None
    tests: list[PairTest]
    effects: Effects | None
    warnings: list[CompareWarning]
    bands: dict[str, list[Band]]
    epochs: dict[str, list[int]]  # per field: the epochs kept, the same for every group and job


def split_key(spec: dict[str, Any]) -> str:
    """What, with the seed, fixes a job's data split: its dataset settings, canonically."""
    return json.dumps(spec.get("dataset"), sort_keys=True, separators=(",", ":"))


def _sample(group: GroupInput) -> Sample:
    finished = [member for member in group.finished() if member.value is not None]
    seeds = [member.seed for member in finished]
    return Sample(
        values=[member.value for member in finished if member.value is not None],
        seeds=None if any(seed is None for seed in seeds) else [seed for seed in seeds if seed is not None],
        split=group.split,
    )


def _describe(key: dict[str, Any]) -> str:
    return ", ".join(f"{path}={json.dumps(value)}" for path, value in key.items()) or "(no differences)"


def _warnings(
    groups: Sequence[GroupInput], samples: Sequence[Sample], swept: Sequence[str]
) -> list[CompareWarning]:
    warnings = []
    excluded = Counter(
        member.status for group in groups for member in group.members if member.status != SUCCEEDED
    )
    if excluded:
        counts = ", ".join(f"{count} {status}" for status, count in sorted(excluded.items()))
        touched = [i for i, group in enumerate(groups) if len(group.finished()) < len(group.members)]
        warnings.append(
            CompareWarning(
                kind="excluded_jobs",
                message=f"{sum(excluded.values())} jobs left out of the statistics ({counts}): "
                "only succeeded jobs count",
                groups=touched,
            )
        )
    few = [i for i, sample in enumerate(samples) if len(sample.values) < MIN_SEEDS_TO_TRUST]
    if few and len(groups) > 1:
        sizes = ", ".join(f"group {i}: n = {len(samples[i].values)}" for i in few)
        warnings.append(
            CompareWarning(
                kind="too_few_seeds",
                message=f"too few seeds to test (n < {MIN_SEEDS_TO_TRUST}; {sizes}): add seeds to the sweep",
                groups=few,
            )
        )
    unswept = sorted({path for group in groups for path in group.key if path not in swept})
    if unswept:
        touched = [i for i, group in enumerate(groups) if any(path in group.key for path in unswept)]
        warnings.append(
            CompareWarning(
                kind="unswept_fields",
                message=f"groups also differ in fields no sweep varied: {', '.join(unswept)}; a difference "
                "between them may come from these",
                groups=touched,
            )
        )
    return warnings


def _effects(
    groups: Sequence[GroupInput], swept: Sequence[str], levels: dict[str, list[Any]]
) -> Effects | None:
    """Effects of the swept fields when the groups are exactly the cells of a grid over them."""
    fields = [path for path in swept if any(path in group.key for group in groups)]
    if not fields or len(groups) < 2:
        return None
    order = {path: list(levels.get(path, [])) for path in fields}
    for group in groups:
        for path in fields:
            if path in group.key and group.key[path] not in order[path]:
                order[path].append(group.key[path])
    cells = {json.dumps([group.key.get(path) for path in fields], sort_keys=True) for group in groups}
    if len(cells) < len(groups) or any(path not in group.key for group in groups for path in fields):
        return None  # two groups in one cell: they differ in something the grid does not describe
    order = {
        path: [level for level in values if any(g.key.get(path) == level for g in groups)]
        for path, values in order.items()
    }
    rows = [
        ([group.key[path] for path in fields], member.value)
        for group in groups
        for member in group.finished()
        if member.value is not None
    ]
    return grid_effects(rows, fields, [order[path] for path in fields])


def analyze(
    groups: Sequence[GroupInput],
    *,
    mode: Mode,
    alpha: float,
    swept: Sequence[str] | None = None,
    levels: dict[str, list[Any]] | None = None,
    fields: Sequence[str] = (),
    points: int | None = None,
) -> Analysis:
    """Best group, its tests against every other group (Holm), effects, per-epoch bands and warnings.

    `swept`: the fields a sweep varied (None: every differing field counts as chosen); `levels`: their
    values in grid order (first = reference level of the effects).
    """
    samples = [_sample(group) for group in groups]
    chosen = list(swept) if swept is not None else list(dict.fromkeys(p for g in groups for p in g.key))
    best = pick_best([summarize(sample.values) for sample in samples], mode)
    tests = [] if best is None else best_vs_others(samples, best=best, mode=mode, alpha=alpha)
    epochs = {
        name: aligned_epochs(
            (member.curves[name] for group in groups for member in group.members if name in member.curves),
            points,
        )
        for name in fields
    }
    curves = {
        name: [
            band([member.curves[name] for member in group.finished() if name in member.curves], epochs[name])
            for group in groups
        ]
        for name in fields
    }
    return Analysis(
        best_group=best,
        tests=tests,
        effects=_effects(groups, chosen, levels or {}),
        warnings=_warnings(groups, samples, chosen),
        bands=curves,
        epochs=epochs,
    )
