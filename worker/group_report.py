"""What a replica group tells the service: one transaction per epoch for all its jobs, not one per job.

A group's jobs share one process, so their epoch rows and checkpoint promotions are written together;
each job's rows are still fenced by its own attempt, and each job beats (and learns of a cancel request
or a replacement) through its own heartbeat thread, as a job alone does.
"""

from __future__ import annotations

import logging
from typing import Any

from sqlalchemy.orm import Session

from core import lifecycle
from core.artifacts import checkpoint_key
from training.callbacks import CheckpointInfo
from training.records import EpochRecord
from worker.context import WorkerContext, shutdown_requested
from worker.heartbeat import JobHeartbeat
from worker.retention import is_periodic
from worker.runner import HAND_BACK_AFTER_S, ServiceCallback, _hand_back

log = logging.getLogger(__name__)


class GroupReport:
    """Buffers the group's epoch and checkpoint rows until flush(); runs each member's heartbeat."""

    def __init__(self, context: WorkerContext, attempts: dict[str, str]) -> None:
        self.context = context
        self.members = {
            job_id: GroupMember(self, job_id, attempt, _heartbeat(context, job_id, attempt, attempts))
            for job_id, attempt in attempts.items()
        }
        self.epochs: list[tuple[str, str, dict[str, Any]]] = []
        self.checkpoints: list[dict[str, Any]] = []

    def __enter__(self) -> GroupReport:
        for member in self.members.values():
            member.heartbeat.start()
        return self

    def __exit__(self, *_: object) -> None:
        for member in self.members.values():
            member.heartbeat.stop()

    def flush(self) -> None:
        """Write the buffered rows of every job in one transaction; a job its attempt lost writes nothing."""
        epochs, checkpoints = self.epochs, self.checkpoints
        self.epochs, self.checkpoints = [], []
        if not epochs and not checkpoints:
            return

        def write(session: Session) -> list[str]:
            return lifecycle.record_group_epoch(session, records=epochs, checkpoints=checkpoints)

        for job_id in self.context.write(write):
            self.members[job_id].replaced()


def _heartbeat(context: WorkerContext, job_id: str, attempt: str, group: dict[str, str]) -> JobHeartbeat:
    """The member's heartbeat; when shutdown finds the group stuck in a long phase, whichever member's
    thread notices first hands back every job of the group (the process then ends)."""

    def hand_back_group() -> bool:
        outcomes = {member: _hand_back(context, member, token) for member, token in group.items()}
        return outcomes[job_id] == "handed back"

    return JobHeartbeat(
        context.sessions,
        job_id=job_id,
        attempt=attempt,
        timeout=context.settings.heartbeat_timeout,
        shutting_down=shutdown_requested.is_set,
        hand_back_after=HAND_BACK_AFTER_S,
        hand_back=hand_back_group,
    )


class GroupMember(ServiceCallback):
    """One job's callback inside a replica group: its rows go through the group's report."""

    def __init__(self, report: GroupReport, job_id: str, attempt: str, heartbeat: JobHeartbeat) -> None:
        super().__init__(report.context, job_id, attempt, heartbeat)
        self.report = report

    def replaced(self) -> None:
        """A write found the job owned by another attempt: write nothing more."""
        self._replaced = True

    def on_epoch_end(self, record: EpochRecord) -> None:
        """Buffer the epoch's row (flushed with the group's other rows)."""
        if not self.lost:
            self.report.epochs.append((self.job_id, self.attempt, record.model_dump(mode="json")))

    def on_checkpoint(self, info: CheckpointInfo) -> None:
        """Upload under this attempt's name now; its promotion is written with the epoch's other rows
        (periodic ones, rare and pruned as they come, at once as a job alone does)."""
        if is_periodic(info.name):
            super().on_checkpoint(info)
            return
        if self.lost:
            return
        key = checkpoint_key(self.job_id, info.name, attempt=self.attempt)
        self.context.store.put_file(info.path, key)
        self.report.checkpoints.append(
            {
                "job_id": self.job_id,
                "attempt": self.attempt,
                "name": info.name,
                "uri": key,
                "epoch": info.epoch,
                "size_bytes": info.path.stat().st_size,
            }
        )
