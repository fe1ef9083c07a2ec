"""Seed groups: jobs that differ only in training.seed, summarized over their succeeded jobs."""

from __future__ import annotations

import json
from collections import Counter
from typing import Any

from api.compare.schemas import ComparedJob, CompareGroup
from api.compare.stats import summarize
from core.curves import finite_number
from core.models import JobStatus

SEED_PATH = "training.seed"


def canonical(value: Any) -> str:
    """Canonical JSON of a value: equal values, equal text."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"))


def group_jobs(
    jobs: list[ComparedJob], *, seeds: dict[str, int | None], metric: str, with_target: bool = False
) -> list[CompareGroup]:
    """Jobs grouped by their differing fields without the seed, in order of first appearance.

    Statistics are over the succeeded jobs (the others are counted in `excluded`). With a target,
    epochs_to_target is summarized over the jobs that reached it (its n says how many).
    """
    members: dict[str, tuple[dict[str, Any], list[ComparedJob]]] = {}
    for job in jobs:
        key = {path: value for path, value in job.differs.items() if path != SEED_PATH}
        members.setdefault(canonical(key), (key, []))[1].append(job)
    groups = []
    for key, group in members.values():
        counted = [job for job in group if job.status == JobStatus.succeeded]
        names = [metric, *dict.fromkeys(name for job in counted for name in (job.test or {}))]
        extra = ["seconds", "epochs_to_target"] if with_target else ["seconds"]
        values: dict[str, list[float]] = {name: [] for name in [*names, *extra]}
        for job in counted:
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
        excluded = Counter(job.status.value for job in group if job.status != JobStatus.succeeded)
        groups.append(
            CompareGroup(
                key=key,
                job_ids=[job.id for job in group],
                n=len(group),
                seeds=[seed for job in counted if (seed := seeds.get(job.id)) is not None],
                excluded=dict(sorted(excluded.items())),
                metrics={name: summarize(found) for name, found in values.items()},
            )
        )
    return groups
