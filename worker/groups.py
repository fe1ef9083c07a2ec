"""Replica groups on the worker: claim a group's queued jobs and train them as one stacked model."""

from __future__ import annotations

import logging
import tempfile
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.orm import Session

from core.models import Job, JobStatus
from training.download import DatasetCache, using_cache
from training.spec import JobSpec
from worker import runner
from worker.context import WorkerContext
from worker.group_report import GroupReport
from worker.runner import ServiceCallback, conclude, describe_error, finish

log = logging.getLogger(__name__)


def _with_queued_siblings(context: WorkerContext, job_ids: list[str]) -> list[str]:
    """The given jobs plus the queued jobs of their replica groups (a re-queued group comes back whole,
    whichever of its messages arrives first; the others then find nothing left to claim)."""

    def read(session: Session) -> list[str]:
        groups = set(session.scalars(select(Job.replica_group).where(Job.id.in_(job_ids))))
        groups.discard(None)
        queued = session.scalars(
            select(Job.id)
            .where(Job.replica_group.in_(groups), Job.status == JobStatus.queued)
            .order_by(Job.id)
        )
        return list(dict.fromkeys([*job_ids, *queued]))

    return context.write(read)


def run_group(context: WorkerContext, job_ids: list[str]) -> list[str]:
    """Claim what is still queued of the jobs and train them together; what happened to each one."""
    if not context.settings.replica_groups:
        return [runner.run_job(context, job_id) for job_id in job_ids]
    ids = _with_queued_siblings(context, job_ids)
    if len(ids) == 1:
        return [runner.run_job(context, ids[0])]
    identity = context.identity

    def claim(job_id: str) -> str | None:
        return context.write(
            lambda s: runner.lifecycle.claim_job(
                s, job_id=job_id, worker=identity.name, device=identity.device
            )
        )

    claimed = {job_id: attempt for job_id in ids if (attempt := claim(job_id)) is not None}
    log.info("replica group %s: claimed %s", ids, list(claimed))
    if not claimed:
        return ["skipped"]
    context.beat(next(iter(claimed)))
    try:
        return _train_together(context, claimed)
    finally:
        context.beat(None)


def _train_together(context: WorkerContext, attempts: dict[str, str]) -> list[str]:
    """Prepare each claimed job (id: attempt), train the prepared ones as one group, store each outcome."""
    job_ids = list(attempts)
    outcomes: dict[str, str] = {}
    with (
        GroupReport(context, attempts) as report,
        tempfile.TemporaryDirectory(prefix="trainctl-group-") as scratch,
    ):
        members: list[tuple[str, JobSpec, Path, ServiceCallback]] = []
        for job_id in job_ids:
            out_dir = Path(scratch) / job_id
            try:
                job = runner._load_job(context, job_id)
                if job["cancel_requested"]:
                    outcomes[job_id] = finish(
                        context,
                        job_id,
                        attempts[job_id],
                        JobStatus.cancelled,
                        error="cancelled before it started",
                    )
                    continue
                spec = runner._resolve_dataset(context, JobSpec.model_validate(job["spec"]), out_dir / "data")
                # An earlier attempt left a `last` checkpoint: the replica continues from it.
                runner._fetch_last_checkpoint(context, job_id, out_dir)
            except Exception as error:
                log.exception("job %s failed", job_id)
                failure = describe_error(error)
                outcomes[job_id] = finish(context, job_id, attempts[job_id], JobStatus.failed, error=failure)
                continue
            members.append((job_id, spec, out_dir / "run", report.members[job_id]))
        if members:
            cache = DatasetCache(context.settings.resolved_dataset_cache, context.settings.dataset_mirror)
            try:
                # Imported at worker start; inside the try so that even a failing import ends the claimed
                # jobs with its reason instead of leaving them running until the reaper.
                from training.group import fit_group

                with using_cache(cache):  # benchmarks are read from (and fetched into) this worker's cache
                    results = fit_group(
                        [m[1] for m in members],
                        [m[2] for m in members],
                        [[m[3]] for m in members],
                        resume=True,
                        after_epoch=report.flush,
                        checkpoint_seconds=context.settings.checkpoint_seconds,
                    )
                report.flush()
            except Exception as error:
                log.exception("replica group %s failed", [m[0] for m in members])
                for job_id, *_ in members:
                    failure = describe_error(error)
                    outcomes[job_id] = finish(
                        context, job_id, attempts[job_id], JobStatus.failed, error=failure
                    )
                return [outcomes[job_id] for job_id in job_ids]
            for (job_id, _, _, callback), result in zip(members, results, strict=True):
                outcomes[job_id] = conclude(context, callback, result)
    return [outcomes[job_id] for job_id in job_ids]
