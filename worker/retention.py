"""Periodic checkpoints beyond the newest K are dropped: `best` and `last` are always kept."""

from __future__ import annotations

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from core.models import Checkpoint

PERIODIC_PREFIX = "epoch-"  # the names CheckpointWriter gives checkpoint_every checkpoints


def is_periodic(name: str) -> bool:
    """An `epoch-N` checkpoint (not best or last)."""
    return name.startswith(PERIODIC_PREFIX)


def drop_old_periodic(session: Session, *, job_id: str, keep: int) -> list[str]:
    """Delete (and commit) the rows of the job's periodic checkpoints past the newest `keep`; their keys."""
    rows = session.scalars(
        select(Checkpoint)
        .where(Checkpoint.job_id == job_id, Checkpoint.name.startswith(PERIODIC_PREFIX))
        .order_by(Checkpoint.epoch.desc())
        .offset(keep)
    ).all()
    if rows:
        session.execute(
            delete(Checkpoint).where(Checkpoint.job_id == job_id, Checkpoint.name.in_([r.name for r in rows]))
        )
        session.commit()
    return [row.uri for row in rows]
