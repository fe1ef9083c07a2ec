"""Settings from the environment (prefix TRAINCTL_) or a .env file."""

from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict


def host_memory_bytes() -> int:
    """Physical memory, or the container's cgroup limit where that is lower."""
    physical = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    try:
        limit = Path("/sys/fs/cgroup/memory.max").read_text().strip()
    except OSError:
        return physical
    return min(physical, int(limit)) if limit.isdigit() else physical


class Settings(BaseSettings):
    """Everything that differs between the embedded default and a scaled-out deployment."""

    model_config = SettingsConfigDict(env_prefix="TRAINCTL_", env_file=".env", extra="ignore")

    data_dir: Path = Field(Path("var"), description="Where the embedded default keeps its files.")
    database_url: str | None = Field(None, description="Default: SQLite file DATA_DIR/trainctl.db.")
    broker_url: str | None = Field(None, description="Default: kombu's SQLAlchemy transport on DATA_DIR.")
    artifacts_url: str | None = Field(None, description="fsspec URL; default: DATA_DIR/artifacts.")
    dataset_cache: Path | None = Field(
        None,
        description="Where downloaded benchmarks and generated MNIST-1D are kept; default DATA_DIR/datasets.",
    )
    dataset_mirror: str | None = Field(
        None, description="Base URL serving MIRROR/<dataset>/<file>, used instead of the publishers' sites."
    )
    cors_origins: list[str] = Field(default_factory=list, description="CORS allow-list; empty: CORS off.")
    default_queue: str = Field("cpu", description="Queue for device 'auto' jobs: cpu, or gpu on GPU fleets.")
    heartbeat_timeout: float = Field(
        60.0, gt=0, description="Seconds before a silent running job is re-queued."
    )
    database_connect_timeout: float = Field(
        5.0, gt=0, description="Seconds to wait for a database connection; a hung database answers 503."
    )
    database_statement_timeout: float = Field(
        15.0,
        gt=0,
        description="Seconds one statement may take (PostgreSQL), or wait for a lock (SQLite); then 503.",
    )
    broker_poll_interval: float = Field(0.1, gt=0, description="Polling of the embedded broker, seconds.")
    max_attempts: int = Field(3, ge=1, description="Times a job may be lost with its worker before it fails.")
    reaper_interval: float = Field(5.0, gt=0, description="Seconds between reaper passes.")
    republish_after: float = Field(
        120.0, gt=0, description="Seconds a job may wait queued before its message is published again."
    )
    worker_concurrency: int | None = Field(
        None, ge=1, description="Jobs at once per worker (default: 2 on CPU hosts, 1 per GPU)."
    )
    worker_threads: int | None = Field(
        None, ge=1, description="Torch threads per job (default: CPU cores / concurrency)."
    )
    worker_cuda_memory_fraction: float | None = Field(
        None,
        gt=0,
        le=1,
        description="Share of the GPU's memory one worker process may allocate (several workers on one GPU).",
    )
    worker_nice: int = Field(
        10,
        ge=0,
        le=19,
        description="CPU priority of training processes (nice): where the API or database share the host, "
        "training yields the CPU to them; no effect on a host that only trains.",
    )

    checkpoint_seconds: float = Field(
        10.0,
        ge=0,
        description="Seconds between writes of a running job's best and last checkpoints (and one at its "
        "end); a job resumed after a lost worker redoes at most this much. 0: after every epoch.",
    )

    # Limits (the service's own; the spec has hard ceilings above these).
    keep_checkpoints: int = Field(
        3,
        ge=0,
        description="Periodic checkpoints (checkpoint_every) kept per job, newest first; "
        "best and last are always kept.",
    )
    max_storage_per_owner: int = Field(
        10 * 1024**3, ge=1, description="Bytes of checkpoints and uploads one owner may keep stored."
    )
    max_running_jobs_per_owner: int = Field(
        8, ge=1, description="Jobs of one owner running at once; free slots go to other owners first."
    )
    max_job_seconds: float = Field(
        7 * 24 * 3600.0, gt=0, description="Longest a job may train (per attempt); then it fails saying so."
    )
    max_parameters: int = Field(10_000_000, description="Largest network, in trainable parameters.")
    max_job_memory: int | None = Field(
        None,
        ge=1,
        description="Largest estimated peak memory of one job, in bytes (default: half of this host's "
        "memory; set it to a worker host's memory per job slot where workers run elsewhere).",
    )
    max_epochs: int = Field(10_000, description="Most epochs a job may ask for.")
    max_upload_bytes: int = Field(50 * 1024 * 1024, description="Largest dataset upload.")
    max_dataset_rows: int = Field(1_000_000, description="Most rows in an uploaded dataset.")
    max_dataset_features: int = Field(
        65_536,
        ge=1,
        description="Most numbers per example of an upload (time steps × features for sequences).",
    )
    max_dataset_bytes: int = Field(
        512 * 1024 * 1024, ge=1, description="Largest upload once decompressed (its arrays X and y together)."
    )
    max_request_bytes: int = Field(
        64 * 1024 * 1024, description="Largest request body of any kind; keep it above max_upload_bytes."
    )
    max_queued_jobs_per_owner: int = Field(
        1_000, ge=1, description="Jobs one owner may have waiting (queued); more answers 429."
    )
    max_sweep_jobs: int = Field(
        256, ge=1, description="Most jobs one sweep may create (grid points × seeds)."
    )
    replica_groups: bool = Field(
        True,
        description="Train a sweep's jobs that differ only in seed, lr, L2, activation, ... as one stacked "
        "model.",
    )
    replica_group_memory_mb: float = Field(
        512.0,
        gt=0,
        description="Most memory one replica group's parameters, gradients and optimizer state may take "
        "(estimated: parameters × replicas × 16 bytes); larger groups are split.",
    )
    replica_group_size: int = Field(
        16,
        ge=1,
        description="Most replicas one group may hold; larger groups are split, so that a big sweep keeps "
        "every worker slot busy (a stacked step gains little beyond about 16 replicas on a CPU).",
    )
    events_poll_interval: float = Field(
        1.0, ge=0.05, description="Seconds between database reads of the shared live-events poller."
    )
    request_read_timeout: float = Field(
        30.0,
        gt=0,
        description="Seconds a client may pause while sending a request before it is disconnected.",
    )
    events_keepalive: float = Field(15.0, gt=0, description="Seconds between keep-alive comments on events.")
    session_secret: SecretStr | None = Field(
        None,
        description="Signs dashboard session cookies; set the same value on every API replica. "
        "Default: a random secret kept in DATA_DIR/session-secret.",
    )
    session_max_age: int = Field(
        8 * 3600, ge=60, le=30 * 24 * 3600, description="Seconds a dashboard sign-in lasts."
    )

    @property
    def resolved_max_job_memory(self) -> int:
        """The per-job memory limit, defaulting to half of this host's (or container's) memory."""
        return self.max_job_memory or host_memory_bytes() // 2

    @property
    def resolved_database_url(self) -> str:
        """The database URL, defaulting to a SQLite file under data_dir."""
        return self.database_url or f"sqlite:///{(self.data_dir / 'trainctl.db').resolve()}"

    @property
    def resolved_broker_url(self) -> str:
        """The broker URL, defaulting to kombu's SQLAlchemy transport on a SQLite file (no server)."""
        return self.broker_url or f"sqla+sqlite:///{(self.data_dir / 'broker.db').resolve()}"

    @property
    def resolved_dataset_cache(self) -> Path:
        """The dataset cache folder, defaulting to DATA_DIR/datasets."""
        return self.dataset_cache or self.data_dir / "datasets"

    @property
    def resolved_artifacts_url(self) -> str:
        """Where checkpoints and uploads go, as an fsspec URL or local path."""
        return self.artifacts_url or str((self.data_dir / "artifacts").resolve())


@lru_cache
def get_settings() -> Settings:
    """The process-wide settings."""
    return Settings()
