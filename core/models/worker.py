"""Workers announce themselves here, so health can say who was seen recently."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import DateTime, String
from sqlalchemy.orm import Mapped, mapped_column

from core.db import Base, utcnow


class WorkerBeat(Base):
    """The last sign of life of one worker process."""

    __tablename__ = "worker"

    name: Mapped[str] = mapped_column(String(255), primary_key=True)  # celery hostname, e.g. cpu-0@host
    device: Mapped[str] = mapped_column(String(32))
    queues: Mapped[str] = mapped_column(String(255))
    current_job_id: Mapped[str | None] = mapped_column(String(32))
    started_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    last_seen: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow, index=True)
