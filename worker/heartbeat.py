"""The heartbeat of a running attempt: a thread on a timer, independent of fit()'s steps and epochs.

Long validation, data generation, loading or a slow checkpoint upload never look like a dead worker.
The thread also notices what should stop the job: a cancel request, the attempt replaced by another
claim (fenced: it writes nothing more), its own heartbeat unwritable for longer than the timeout, and
a shutdown whose hand-back the training thread did not reach in time (it then hands the job back itself).
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable

from sqlalchemy.orm import Session, sessionmaker

from core import lifecycle

log = logging.getLogger(__name__)

POLL_S = 0.5  # how stale a cancel request or a replacement may be when fit() asks should_stop()


def beat_interval(heartbeat_timeout: float) -> float:
    """Often enough that a live job never looks stale, rarely enough to spare the database."""
    return max(0.1, min(10.0, heartbeat_timeout / 4))


class JobHeartbeat(threading.Thread):
    """Beats for one attempt every `every` seconds until stopped; its Events say why the job must stop."""

    def __init__(
        self,
        sessions: sessionmaker[Session],
        *,
        job_id: str,
        attempt: str,
        timeout: float,
        shutting_down: Callable[[], bool] | None = None,
        hand_back_after: float | None = None,
        hand_back: Callable[[], bool] | None = None,
    ) -> None:
        super().__init__(name=f"trainctl-heartbeat-{job_id}", daemon=True)
        self.sessions, self.job_id, self.attempt, self.timeout = sessions, job_id, attempt, timeout
        self.every = beat_interval(timeout)
        self.shutting_down, self.hand_back_after, self._hand_back = shutting_down, hand_back_after, hand_back
        self.lost = threading.Event()  # another claim owns the job now (or it ended, or was deleted)
        self.expired = threading.Event()  # no heartbeat could be written for longer than the timeout
        self.cancel_requested = threading.Event()
        self.handed_back = threading.Event()  # this thread handed the job back at shutdown
        self._stopped = threading.Event()

    @property
    def must_stop(self) -> bool:
        """Whether the attempt must stop at its next step."""
        return self.lost.is_set() or self.expired.is_set() or self.cancel_requested.is_set()

    def run(self) -> None:
        last_written = next_beat = time.monotonic()
        shutdown_seen: float | None = None
        while not self._stopped.wait(min(POLL_S, self.every)):
            now = time.monotonic()
            if self.shutting_down is not None and self.shutting_down():
                shutdown_seen = shutdown_seen or now
                if self._overdue(shutdown_seen, now):
                    return
            try:
                with self.sessions() as session:
                    if now >= next_beat:
                        if not lifecycle.heartbeat(session, job_id=self.job_id, attempt=self.attempt):
                            self.lost.set()
                            return
                        last_written, next_beat = now, now + self.every
                    if lifecycle.is_cancel_requested(session, job_id=self.job_id):
                        self.cancel_requested.set()
            except Exception as error:
                silent = time.monotonic() - last_written
                if silent > self.timeout:
                    log.error("job %s: no heartbeat written for %.0f s: stopping it", self.job_id, silent)
                    self.expired.set()
                    return
                log.warning("job %s: heartbeat failed (%s); retrying", self.job_id, type(error).__name__)

    def _overdue(self, shutdown_seen: float, now: float) -> bool:
        """At shutdown, hand the job back here when fit() has not reached a step in time."""
        if self._hand_back is None or self.hand_back_after is None:
            return False
        if now - shutdown_seen < self.hand_back_after:
            return False
        log.warning(
            "job %s did not stop within %.0f s of shutdown: handing it back",
            self.job_id,
            self.hand_back_after,
        )
        self.lost.set()  # from here on the training thread writes nothing
        try:
            if self._hand_back():
                self.handed_back.set()
        except Exception:
            log.exception("job %s: hand-back at shutdown failed; the reaper will re-queue it", self.job_id)
        # fit() is stuck in a long phase (validation, data, an upload): the process ends here so that
        # the worker stops within its grace; the job is queued again (or left to the reaper).
        logging.shutdown()
        os._exit(0)

    def stop(self) -> None:
        """End the beating (the attempt finished or was handed back)."""
        self._stopped.set()
        if self is not threading.current_thread():
            self.join(timeout=5)
