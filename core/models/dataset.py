"""Uploaded datasets."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import JSON, BigInteger, DateTime, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from core.db import Base, utcnow


class Dataset(Base):
    """An uploaded CSV or NPZ, stored in the artifact store under a generated name."""

    __tablename__ = "dataset"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    owner: Mapped[str] = mapped_column(String(200), index=True)
    filename: Mapped[str] = mapped_column(String(255))  # as the client named it; display only
    format: Mapped[str] = mapped_column(String(8))  # csv | npz
    uri: Mapped[str] = mapped_column(String(1024))  # where the bytes live in the artifact store
    target: Mapped[str | None] = mapped_column(String(255))
    rows: Mapped[int] = mapped_column(Integer)
    columns: Mapped[int] = mapped_column(Integer)  # features per example (per time step for sequences)
    example_shape: Mapped[list[int] | None] = mapped_column(JSON)  # [features] or [steps, features]
    task: Mapped[str] = mapped_column(String(16))
    classes: Mapped[int | None] = mapped_column(Integer)
    size_bytes: Mapped[int] = mapped_column(BigInteger)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
