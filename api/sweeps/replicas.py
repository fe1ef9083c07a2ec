"""Replica groups: the jobs of a sweep that one worker trains together as one stacked model."""

from __future__ import annotations

import logging
import math
from collections import defaultdict

from celery import Celery

from api.jobs.service import publish_job
from core.broker import publish_group
from core.config import Settings
from core.models import Job
from core.models.job import requested_device
from training.grouping import replica_key
from training.spec import JobSpec

log = logging.getLogger(__name__)

# Weights, gradients and two optimizer moments in float32: what a replica keeps per parameter.
BYTES_PER_PARAMETER = 16


def group_size_limit(parameters: int, settings: Settings) -> int:
    """Most replicas of a network of `parameters` one group may hold (TRAINCTL_REPLICA_GROUP_MEMORY_MB,
    TRAINCTL_REPLICA_GROUP_SIZE)."""
    budget = settings.replica_group_memory_mb * 2**20
    by_memory = int(budget // max(parameters * BYTES_PER_PARAMETER, 1))
    return max(1, min(by_memory, settings.replica_group_size))


def assign_groups(sweep_id: str, jobs: list[tuple[Job, JobSpec, int]], settings: Settings) -> list[list[Job]]:
    """Split the sweep's (job, spec, parameters) into groups that train together; sets job.replica_group.

    Jobs whose specs differ only in what each replica keeps to itself (training.grouping.BATCHABLE_FIELDS)
    share a group, cut into even parts no larger than the memory and size bounds; alone when grouping is off.
    """
    if not settings.replica_groups:
        return [[job] for job, _, _ in jobs]
    together: dict[str, list[tuple[Job, int]]] = defaultdict(list)
    alone: list[list[Job]] = []
    for job, spec, parameters in jobs:
        key = replica_key(spec)
        if key is None:
            alone.append([job])
        else:
            together[key].append((job, parameters))
    groups: list[list[Job]] = []
    for members in together.values():
        limit = group_size_limit(max(p for _, p in members), settings)
        parts = math.ceil(len(members) / limit)
        base, extra = divmod(len(members), parts)  # sizes differ by at most one
        start = 0
        for part in range(parts):
            size = base + (1 if part < extra else 0)
            groups.append([job for job, _ in members[start : start + size]])
            start += size
    for number, group in enumerate(g for g in groups if len(g) > 1):
        for job in group:
            job.replica_group = f"{sweep_id}.{number + 1}"
    return groups + alone


def publish_groups(celery_app: Celery, groups: list[list[Job]], *, settings: Settings) -> None:
    """One message per group (its job ids), after the commit; a lost one is re-published by the reaper."""
    for group in groups:
        if len(group) == 1:
            publish_job(celery_app, group[0], settings=settings)
            continue
        device = requested_device(group[0].spec)
        try:
            publish_group(
                celery_app, [job.id for job in group], device=device, default_queue=settings.default_queue
            )
        except Exception as error:  # kombu raises transport-specific types
            log.warning("replica group %s not published (%s)", group[0].replica_group, type(error).__name__)
