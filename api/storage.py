"""Per-owner storage quota: checkpoints and uploads together (no FastAPI here)."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from api.errors import AppError, PayloadTooLarge, TooManyRequests
from core.config import Settings
from core.models import Checkpoint, Dataset, Job
from training.spec import JobSpec
from training.spec.memory import checkpoint_bytes, checkpoints_kept, format_bytes

LARGEST_SHOWN = 3


@dataclass(frozen=True)
class StorageUse:
    """Bytes an owner keeps stored, and their largest jobs and uploads (what to delete first)."""

    checkpoints: int
    uploads: int
    largest_jobs: list[tuple[str, int]]
    largest_uploads: list[tuple[str, int]]

    @property
    def total(self) -> int:
        """Checkpoints and uploads together."""
        return self.checkpoints + self.uploads


def storage_use(session: Session, *, owner: str) -> StorageUse:
    """What the owner's checkpoints and uploads take."""
    per_job = (
        select(Checkpoint.job_id, func.sum(Checkpoint.size_bytes).label("size"))
        .join(Job, Job.id == Checkpoint.job_id)
        .where(Job.owner == owner)
        .group_by(Checkpoint.job_id)
        .subquery()
    )
    jobs = session.execute(select(per_job.c.job_id, per_job.c.size).order_by(per_job.c.size.desc())).all()
    uploads = session.execute(
        select(Dataset.id, Dataset.size_bytes)
        .where(Dataset.owner == owner)
        .order_by(Dataset.size_bytes.desc())
    ).all()
    return StorageUse(
        checkpoints=sum(int(size or 0) for _, size in jobs),
        uploads=sum(int(size or 0) for _, size in uploads),
        largest_jobs=[(job_id, int(size or 0)) for job_id, size in jobs[:LARGEST_SHOWN]],
        largest_uploads=[(dataset_id, int(size or 0)) for dataset_id, size in uploads[:LARGEST_SHOWN]],
    )


def _over_quota(use: StorageUse, *, adding: int, what: str, limit: int, error: type[AppError]) -> AppError:
    def listed(items: list[tuple[str, int]]) -> str:
        return ", ".join(f"{name} ({format_bytes(size)})" for name, size in items) or "none"

    return error(
        f"your checkpoints take {format_bytes(use.checkpoints)} and your uploads "
        f"{format_bytes(use.uploads)}; "
        f"{what} (about {format_bytes(adding)}) would pass your storage quota of {format_bytes(limit)} "
        "(TRAINCTL_MAX_STORAGE_PER_OWNER). Delete finished jobs you no longer need with DELETE /v1/jobs/{id} "
        f"(largest: {listed(use.largest_jobs)}) or uploads with DELETE /v1/datasets/{{id}} "
        f"(largest: {listed(use.largest_uploads)})"
    )


def check_upload_fits(session: Session, *, owner: str, settings: Settings, size: int) -> None:
    """413 when storing an upload of `size` bytes would put the owner over their storage quota."""
    use = storage_use(session, owner=owner)
    limit = settings.max_storage_per_owner
    if use.total + size > limit:
        raise _over_quota(use, adding=size, what="this upload", limit=limit, error=PayloadTooLarge)


def check_jobs_fit(
    session: Session, *, owner: str, settings: Settings, jobs: list[tuple[JobSpec, int]]
) -> None:
    """429 when the checkpoints these (spec, parameters) jobs will keep would pass the storage quota."""
    adding = sum(
        checkpoint_bytes(spec, parameters) * checkpoints_kept(spec, settings.keep_checkpoints)
        for spec, parameters in jobs
    )
    use = storage_use(session, owner=owner)
    limit = settings.max_storage_per_owner
    if use.total + adding > limit:
        what = (
            "the checkpoints of this job" if len(jobs) == 1 else f"the checkpoints of these {len(jobs)} jobs"
        )
        raise _over_quota(use, adding=adding, what=what, limit=limit, error=TooManyRequests)
