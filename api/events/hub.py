"""One poller per process fans new epoch records and status changes out to every open event stream.

Why shared: each tick is two small queries for ALL watched jobs, so the database load does not grow with
the number of watchers (a dashboard of 50 tabs costs what one does), and no stream holds a database
connection: the poller opens a session per tick, in a worker thread, and closes it before sleeping.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import and_, or_, select
from sqlalchemy.orm import Session, sessionmaker

from api.jobs.outputs import served_record, stored_record
from api.jobs.service import to_summary
from core.models import EpochMetric, Job
from core.models.job import FINISHED

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Event:
    """One Server-Sent Event."""

    event: str
    data: Any
    id: int | None = None

    def encode(self) -> str:
        """The event in text/event-stream framing."""
        lines = [f"id: {self.id}"] if self.id is not None else []
        lines += [f"event: {self.event}", f"data: {json.dumps(self.data, separators=(',', ':'))}"]
        return "\n".join(lines) + "\n\n"


@dataclass(eq=False)
class Subscriber:
    """One open stream: the job it watches, the last epoch it was sent, and its outbox."""

    job_id: str
    after: int
    queue: asyncio.Queue[Event | None] = field(default_factory=asyncio.Queue)
    status: str | None = None
    done: bool = False


@dataclass
class _Snapshot:
    job: Job | None
    summary: dict[str, Any] | None
    records: list[tuple[int, dict[str, Any], datetime]]  # epoch, record, when it was written
    status_at: datetime | None  # when the job entered its current status; None: after every record


def _status_at(job: Job) -> datetime | None:
    """When the job entered its current status (a job finishes only after its last record: None)."""
    if job.status in FINISHED:
        return None
    return job.started_at if job.status == "running" else job.queued_at


class EventHub:
    """Polls the database at most once per `interval` for every watched job and feeds the subscribers."""

    def __init__(self, sessions: sessionmaker[Session], *, interval: float) -> None:
        self._sessions = sessions
        self.interval = interval
        self._subscribers: dict[str, set[Subscriber]] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._wake: asyncio.Event | None = None
        self._task: asyncio.Task[None] | None = None
        self.polls = 0  # ticks that read the database, for tests and metrics

    def subscribe(self, job_id: str, *, after: int) -> Subscriber:
        """Watch a job from the epoch after `after`; the poller starts (or is woken) at once."""
        loop = asyncio.get_running_loop()
        if self._loop is not loop:  # a new event loop (tests start one per client): start afresh on it
            self._loop, self._wake, self._task = loop, asyncio.Event(), None
        subscriber = Subscriber(job_id=job_id, after=after)
        self._subscribers.setdefault(job_id, set()).add(subscriber)
        assert self._wake is not None
        self._wake.set()
        if self._task is None or self._task.done():
            self._task = loop.create_task(self._run(), name="trainctl-events")
        return subscriber

    def unsubscribe(self, subscriber: Subscriber) -> None:
        """Stop feeding a stream (it ended or its client went away)."""
        watchers = self._subscribers.get(subscriber.job_id)
        if watchers is not None:
            watchers.discard(subscriber)
            if not watchers:
                del self._subscribers[subscriber.job_id]

    async def close(self) -> None:
        """Stop the poller (app shutdown)."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task
        self._task = None

    async def _run(self) -> None:
        assert self._wake is not None
        while self._subscribers:
            self._wake.clear()
            cursors = {
                job_id: min(watcher.after for watcher in watchers)
                for job_id, watchers in self._subscribers.items()
                if watchers
            }
            try:
                snapshots = await asyncio.to_thread(self._read, cursors)
                self.polls += 1
                self._deliver(snapshots)
            except Exception:  # the database may be down for a while: streams wait, the next tick retries
                log.warning("events poll failed; retrying in %.1f s", self.interval, exc_info=True)
            # Sleep a full interval; a new subscriber wakes the poller early so its first events come at once.
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout=self.interval)

    def _read(self, cursors: dict[str, int]) -> dict[str, _Snapshot]:
        """One session, two queries: the watched jobs, then only the records newer than their cursors."""
        with self._sessions() as session:
            jobs = {job.id: job for job in session.scalars(select(Job).where(Job.id.in_(list(cursors))))}
            newer = [
                and_(EpochMetric.job_id == job_id, EpochMetric.epoch > after)
                for job_id, after in cursors.items()
                if job_id in jobs and jobs[job_id].epoch > after
            ]
            records: dict[str, list[tuple[int, dict[str, Any], datetime]]] = {
                job_id: [] for job_id in cursors
            }
            if newer:
                rows = session.execute(
                    select(EpochMetric.job_id, EpochMetric.epoch, EpochMetric.record, EpochMetric.created_at)
                    .where(or_(*newer))
                    .order_by(EpochMetric.job_id, EpochMetric.epoch)
                )
                for job_id, epoch, record, created_at in rows:
                    records[job_id].append((int(epoch), record, created_at))
            return {
                job_id: _Snapshot(
                    job=jobs.get(job_id),
                    summary=to_summary(jobs[job_id]).model_dump(mode="json")
                    if job_id in jobs and jobs[job_id].status in FINISHED
                    else None,
                    records=records[job_id],
                    status_at=_status_at(jobs[job_id]) if job_id in jobs else None,
                )
                for job_id in cursors
            }

    def _deliver(self, snapshots: dict[str, _Snapshot]) -> None:
        for job_id, snapshot in snapshots.items():
            for subscriber in list(self._subscribers.get(job_id, ())):
                self._feed(subscriber, snapshot)

    def _feed(self, subscriber: Subscriber, snapshot: _Snapshot) -> None:
        job = snapshot.job
        if job is None:  # deleted while watched
            subscriber.queue.put_nowait(Event("end", {"id": subscriber.job_id, "status": "deleted"}))
            self._finish(subscriber)
            return
        changed = job.status != subscriber.status
        for epoch, record, written in snapshot.records:
            # a status change is told after the epochs written before it (all of them, for a finished job)
            if changed and snapshot.status_at is not None and written > snapshot.status_at:
                self._tell_status(subscriber, job)
                changed = False
            if epoch > subscriber.after:
                subscriber.queue.put_nowait(Event("epoch", served_record(stored_record(record)), id=epoch))
                subscriber.after = epoch
        if changed:
            self._tell_status(subscriber, job)
        if snapshot.summary is not None:
            # Finished: its records were written before the final status, so this read had all of them.
            subscriber.queue.put_nowait(Event("end", snapshot.summary))
            self._finish(subscriber)

    def _tell_status(self, subscriber: Subscriber, job: Job) -> None:
        subscriber.status = job.status
        status = {"id": job.id, "status": job.status, "epoch": job.epoch, "epochs": job.epochs}
        subscriber.queue.put_nowait(Event("status", status))

    def _finish(self, subscriber: Subscriber) -> None:
        subscriber.done = True
        subscriber.queue.put_nowait(None)
        self.unsubscribe(subscriber)


def app_hub(app: Any) -> EventHub:
    """The app's one shared poller (app.state.event_hub), made on first use; the app's lifespan closes it."""
    hub: EventHub | None = getattr(app.state, "event_hub", None)
    if hub is None:
        hub = EventHub(app.state.session_factory, interval=app.state.settings.events_poll_interval)
        app.state.event_hub = hub
    return hub
