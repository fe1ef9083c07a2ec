"""A stop signal never deadlocks the worker, whatever the code it interrupts was holding."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]

# The main thread holds the shutdown event's lock (as inside is_set, wait or set) when SIGTERM arrives, and
# Celery's handler runs our shutdown hook right there. Setting the event in the handler itself deadlocked
# the worker for good (seen: an orphaned worker alive minutes after its serve was SIGKILLed).
INTERRUPTED_INSIDE_THE_LOCK = """
import os, signal
from worker import celery_app
from worker.context import shutdown_requested

signal.signal(signal.SIGTERM, lambda *_: celery_app._on_shutdown())
with shutdown_requested._cond:  # multiprocessing.Event's lock, as held inside its methods
    os.kill(os.getpid(), signal.SIGTERM)
    sum(range(1000))  # the handler runs between these bytecodes
print("set" if shutdown_requested.wait(10) else "not set", flush=True)
"""


def test_sigterm_while_the_shutdown_event_is_locked_still_sets_it(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TRAINCTL_")}
    env.update(PYTHONPATH=str(REPO_ROOT), TRAINCTL_DATA_DIR=str(tmp_path))
    try:
        done = subprocess.run(
            [sys.executable, "-c", INTERRUPTED_INSIDE_THE_LOCK],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
    except subprocess.TimeoutExpired:
        raise AssertionError("the SIGTERM handler deadlocked on the shutdown event's lock") from None
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.strip() == "set"
