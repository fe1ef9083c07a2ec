"""What a replica group tells the service: one transaction per epoch for all its jobs, not one per job.

A group's jobs share one process, so their epoch rows, checkpoint rows, cancel polls and heartbeats
are written together; each job's rows are still conditional on the job being this worker's.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session

from core import lifecycle
from core.artifacts import checkpoint_key
from training.callbacks import CheckpointInfo
from training.records import EpochRecord
from worker.retention import is_periodic
from worker.runner import CANCEL_POLL_S, ServiceCallback, WorkerContext, shutdown_requested

log = logging.getLogger(__name__)


class GroupReport:
    """Buffers the group's epoch and checkpoint rows until flush(); polls for all its jobs at once.

    The polls (cancel requests every CANCEL_POLL_S, heartbeats when due) run on a thread of their own
    while the group trains: setting up R replicas or ending their epoch is a long phase, not a dead worker.
    """

    def __init__(self, context: WorkerContext, job_ids: list[str]) -> None:
        self.context = context
        self.members = {job_id: GroupMember(self, job_id) for job_id in job_ids}
        self.epochs: list[tuple[str, dict[str, Any]]] = []
        self.checkpoints: list[dict[str, Any]] = []
        self._next_beat = 0.0
        self._beat_every = max(CANCEL_POLL_S, min(10.0, context.settings.heartbeat_timeout / 4))
        self._stopped = threading.Event()
        self._poller = threading.Thread(
            target=self._poll_until_stopped, name="trainctl-group-poll", daemon=True
        )

    def __enter__(self) -> GroupReport:
        self._poller.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stopped.set()
        self._poller.join()

    def _poll_until_stopped(self) -> None:
        while not self._stopped.wait(CANCEL_POLL_S):
            try:
                self.poll()
            except Exception:  # the next poll tries again; an epoch write waits out a database outage
                log.warning("could not poll replica group %s", list(self.members), exc_info=True)

    def flush(self) -> None:
        """Write the buffered rows of every job in one transaction; a job that is no longer ours is lost."""
        epochs, checkpoints = self.epochs, self.checkpoints
        self.epochs, self.checkpoints = [], []
        if not epochs and not checkpoints:
            return
        worker = self.context.identity.name

        def write(session: Session) -> list[str]:
            return lifecycle.record_group_epoch(
                session, worker=worker, records=epochs, checkpoints=checkpoints
            )

        for job_id in self.context.write(write):
            self.members[job_id].lost = True

    def poll(self) -> None:
        """Cancel requests of every job, and their heartbeats when due."""
        now = time.monotonic()
        beat = now >= self._next_beat
        if beat:
            self._next_beat = now + self._beat_every
        live = {m.job_id: m for m in self.members.values() if not (m.lost or m.cancel_requested)}
        worker = self.context.identity.name
        try:
            with self.context.sessions() as session:
                polled = lifecycle.poll_group(session, job_ids=list(live), worker=worker, beat=beat)
        except DBAPIError:
            # An unreachable database must not stop training: the epoch write waits it out instead.
            log.warning("could not poll replica group %s; training on", list(self.members))
            return
        for job_id, (cancel_requested, ours) in polled.items():
            member = live[job_id]
            member.cancel_requested = cancel_requested
            member.lost = member.lost or (not ours and not cancel_requested)


class GroupMember(ServiceCallback):
    """One job's callback inside a replica group: its rows go through the group's report."""

    def __init__(self, report: GroupReport, job_id: str) -> None:
        super().__init__(report.context, job_id)
        self.report = report

    def on_epoch_end(self, record: EpochRecord) -> None:
        """Buffer the epoch's row (flushed with the group's other rows)."""
        self.report.epochs.append((self.job_id, record.model_dump(mode="json")))

    def on_checkpoint(self, info: CheckpointInfo) -> None:
        """Upload the checkpoint now; its row is written with the epoch's other rows (periodic ones,
        rare and pruned as they come, at once as a job alone does)."""
        if is_periodic(info.name):
            super().on_checkpoint(info)
            return
        key = checkpoint_key(self.job_id, info.name)
        self.context.store.put_file(info.path, key)
        size = info.path.stat().st_size
        self.report.checkpoints.append(
            {"job_id": self.job_id, "name": info.name, "uri": key, "epoch": info.epoch, "size_bytes": size}
        )

    def should_stop(self) -> bool:
        """Stop on shutdown, a cancel request or a lost job (the group's poller keeps these current)."""
        if time.monotonic() > self._deadline:
            self.timed_out = True  # TRAINCTL_MAX_JOB_SECONDS, counted per job as for a job alone
        return shutdown_requested.is_set() or self.lost or self.cancel_requested or self.timed_out
