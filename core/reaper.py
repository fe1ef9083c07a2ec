"""The reaper: re-queue jobs whose worker vanished, re-publish jobs whose message was lost.

One implementation, two schedulers: Celery beat in a scaled-out deployment, a thread in `trainctl serve`.
"""

from __future__ import annotations

import logging
import threading
import time

from celery import Celery
from sqlalchemy.orm import Session, sessionmaker

from core.broker import publish_job, purge_delivered_messages
from core.config import Settings
from core.lifecycle import ReaperOutcome, republish_lost, requeue_stale

log = logging.getLogger(__name__)

PURGE_EVERY_S = 600.0  # delivered messages of the embedded broker are deleted this often
_next_purge = 0.0


def run_reaper(*, sessions: sessionmaker[Session], celery_app: Celery, settings: Settings) -> ReaperOutcome:
    """One reaper pass; jobs are published only after the transaction that re-queued them committed."""
    with sessions() as session:
        outcome = requeue_stale(
            session, timeout=settings.heartbeat_timeout, max_attempts=settings.max_attempts
        )
    with sessions() as session:
        lost = republish_lost(session, older_than=settings.republish_after)
    outcome.republish.extend(lost.republish)
    for job_id, device in outcome.republish:
        publish_job(celery_app, job_id, device=device, default_queue=settings.default_queue)
    global _next_purge
    if time.monotonic() >= _next_purge:
        _next_purge = time.monotonic() + PURGE_EVERY_S
        purge_delivered_messages(settings)
    if outcome.republish or outcome.failed:
        log.info("reaper: re-published %s, failed as lost %s", outcome.republish, outcome.failed)
    return outcome


class ReaperThread(threading.Thread):
    """Runs the reaper every settings.reaper_interval seconds until stopped (the embedded scheduler)."""

    def __init__(self, *, sessions: sessionmaker[Session], celery_app: Celery, settings: Settings) -> None:
        super().__init__(name="trainctl-reaper", daemon=True)
        self._sessions, self._celery_app, self._settings = sessions, celery_app, settings
        self._stopped = threading.Event()

    def run(self) -> None:
        while not self._stopped.wait(self._settings.reaper_interval):
            try:
                run_reaper(sessions=self._sessions, celery_app=self._celery_app, settings=self._settings)
            except Exception:
                # The database or broker may be down for a while; the next pass tries again.
                log.warning(
                    "reaper failed; retrying in %.0f s", self._settings.reaper_interval, exc_info=True
                )

    def stop(self) -> None:
        """Ask the loop to end after the current pass."""
        self._stopped.set()
