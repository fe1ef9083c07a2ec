"""Sweeps: one base spec run over a grid of values and several seeds."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, DateTime, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from core.db import Base, utcnow


class Sweep(Base):
    """A batch of jobs made from `base` by the `grid` of dotted-path values × `seeds` seeds."""

    __tablename__ = "sweep"
    __table_args__ = (Index("ix_sweep_owner_created", "owner", "created_at"),)

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    owner: Mapped[str] = mapped_column(String(200))
    name: Mapped[str] = mapped_column(String(200))
    base: Mapped[dict[str, Any]] = mapped_column(JSON)  # the validated base spec
    grid: Mapped[dict[str, list[Any]]] = mapped_column(JSON)  # {dotted path: [values]}, in request order
    seeds: Mapped[int] = mapped_column(Integer)
    tags: Mapped[list[str] | None] = mapped_column(JSON)  # the tags its jobs were given (and PATCH sets)
    notes: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
