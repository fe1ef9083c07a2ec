"""Workers announce themselves here, so health can say who was seen recently."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import DateTime, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from core.db import Base, utcnow


class WorkerBeat(Base):
    """The last sign of life of one training process (a Celery worker runs `concurrency` of them)."""

    __tablename__ = "worker"

    name: Mapped[str] = mapped_column(String(255), primary_key=True)  # host:pid of the training process
    node: Mapped[str | None] = mapped_column(String(255))  # the Celery worker's name, e.g. cpu-41@host
    host: Mapped[str | None] = mapped_column(String(255))
    pid: Mapped[int | None] = mapped_column(Integer)  # the Celery worker's main process
    concurrency: Mapped[int | None] = mapped_column(Integer)  # jobs the Celery worker runs at once
    device: Mapped[str] = mapped_column(String(32))
    queues: Mapped[str] = mapped_column(String(255))
    current_job_id: Mapped[str | None] = mapped_column(String(32))
    started_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    last_seen: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow, index=True)
