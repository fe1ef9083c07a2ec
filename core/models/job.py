"""Jobs, their tags, per-epoch metrics and checkpoints."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import JSON, Boolean, DateTime, Float, ForeignKey, Index, Integer, LargeBinary, String, Text
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column, relationship

from core.db import Base, utcnow


class JobStatus(StrEnum):
    """Lifecycle: queued -> running -> succeeded | failed | cancelled (running -> queued on re-queue)."""

    queued = "queued"
    running = "running"
    succeeded = "succeeded"
    failed = "failed"
    cancelled = "cancelled"


FINISHED = frozenset({JobStatus.succeeded, JobStatus.failed, JobStatus.cancelled})


def requested_device(spec: dict[str, Any] | None) -> str:
    """The device a stored spec asks for (`auto`, `cpu`, `cuda:N`), read from its raw JSON."""
    return str(((spec or {}).get("training") or {}).get("device", "auto"))


class Job(Base):
    """A training job: the validated spec and everything known about its run."""

    __tablename__ = "job"
    __table_args__ = (
        Index("ix_job_owner_created", "owner", "created_at"),
        Index("ix_job_owner_idempotency", "owner", "idempotency_key", unique=True),
    )

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    owner: Mapped[str] = mapped_column(String(200))
    name: Mapped[str | None] = mapped_column(String(200), index=True)
    spec: Mapped[dict[str, Any]] = mapped_column(JSON)
    status: Mapped[str] = mapped_column(String(16), index=True, default=JobStatus.queued)
    warnings: Mapped[list[dict[str, Any]]] = mapped_column(JSON, default=list)
    idempotency_key: Mapped[str | None] = mapped_column(String(255))
    request_hash: Mapped[str | None] = mapped_column(String(64))
    cancel_requested: Mapped[bool] = mapped_column(Boolean, default=False)
    epoch: Mapped[int] = mapped_column(Integer, default=0)  # last finished epoch
    epochs: Mapped[int] = mapped_column(Integer)  # epochs asked for
    epoch_seconds: Mapped[float | None] = mapped_column(Float)  # mean, for the ETA
    result: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    error: Mapped[str | None] = mapped_column(Text)
    notes: Mapped[str | None] = mapped_column(Text)  # free text for people; PATCH changes it
    worker: Mapped[str | None] = mapped_column(String(255))
    # The token of the claim that owns the job while it runs: every write of that attempt is conditional
    # on it, so a worker whose job was re-queued and claimed again writes nothing more.
    attempt: Mapped[str | None] = mapped_column(String(32))
    device: Mapped[str | None] = mapped_column(String(32))
    attempts: Mapped[int] = mapped_column(Integer, default=0)  # claims, less hand-backs at shutdown
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    queued_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)  # last publish
    started_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    heartbeat_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    sweep_id: Mapped[str | None] = mapped_column(ForeignKey("sweep.id", ondelete="SET NULL"), index=True)
    # The values this job's sweep set: {dotted path: value, "training.seed": seed}.
    sweep_params: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    # Jobs of one sweep trained together as one stacked model share this id (None: trained alone).
    replica_group: Mapped[str | None] = mapped_column(String(64), index=True)

    tags: Mapped[list[JobTag]] = relationship(
        back_populates="job", cascade="all, delete-orphan", lazy="selectin", order_by="JobTag.tag"
    )


class JobTag(Base):
    """One tag of a job (a table, so filtering by tag is an indexed join on every backend)."""

    __tablename__ = "job_tag"

    job_id: Mapped[str] = mapped_column(ForeignKey("job.id", ondelete="CASCADE"), primary_key=True)
    tag: Mapped[str] = mapped_column(String(100), primary_key=True, index=True)

    job: Mapped[Job] = relationship(back_populates="tags")


class EpochMetric(Base):
    """One epoch's metrics record; (job_id, epoch) is the key, so a resumed run cannot duplicate it."""

    __tablename__ = "epoch_metric"

    job_id: Mapped[str] = mapped_column(ForeignKey("job.id", ondelete="CASCADE"), primary_key=True)
    epoch: Mapped[int] = mapped_column(Integer, primary_key=True)
    # JSONB on PostgreSQL: compare reads a few fields of unfinished jobs' records in SQL (finished jobs:
    # core.curves).
    # JSONB does not keep key order; readers restore it by validating an EpochRecord.
    record: Mapped[dict[str, Any]] = mapped_column(JSON().with_variant(JSONB(), "postgresql"))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class JobCurve(Base):
    """A finished job's epochs (packed, core.curves): with its JobCurveField rows, compare's read of it."""

    __tablename__ = "job_curve"

    job_id: Mapped[str] = mapped_column(ForeignKey("job.id", ondelete="CASCADE"), primary_key=True)
    epochs: Mapped[bytes] = mapped_column(LargeBinary)


class JobCurveField(Base):
    """One numeric top-level epoch field of a finished job: its value at each of JobCurve.epochs."""

    __tablename__ = "job_curve_field"

    job_id: Mapped[str] = mapped_column(ForeignKey("job.id", ondelete="CASCADE"), primary_key=True)
    field: Mapped[str] = mapped_column(Text, primary_key=True)  # any record key: no length limit
    series: Mapped[bytes] = mapped_column(LargeBinary)


class Checkpoint(Base):
    """A checkpoint file in the artifact store; `last` and `best` are overwritten as training goes."""

    __tablename__ = "checkpoint"

    job_id: Mapped[str] = mapped_column(ForeignKey("job.id", ondelete="CASCADE"), primary_key=True)
    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    uri: Mapped[str] = mapped_column(String(1024))
    epoch: Mapped[int] = mapped_column(Integer)
    size_bytes: Mapped[int] = mapped_column(Integer)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
