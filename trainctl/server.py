"""`trainctl serve`: the embedded default in one command (API, one worker process, the reaper)."""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

from sqlalchemy import func, select

from core.config import Settings
from core.db import engine_for, make_session_factory
from core.process import SUPERVISOR_PID_ENV, DataDirLock, die_with_parent

log = logging.getLogger("trainctl.serve")

WORKER_STOP_GRACE_S = 30.0  # a running job checkpoints and is handed back within this
RESTART_BACKOFF_S = (1.0, 2.0, 5.0, 10.0)


def ensure_first_key(settings: Settings) -> str | None:
    """Create a first API key when there is none; write it to DATA_DIR/api-key (0600); None if one exists."""
    from api.auth.service import create_key
    from core.models import ApiKey

    engine = engine_for(settings)
    try:
        with make_session_factory(engine)() as session:
            if session.scalar(select(func.count()).select_from(ApiKey)):
                return None
            _row, secret = create_key(session, owner="admin")
    finally:
        engine.dispose()
    key_file = settings.data_dir / "api-key"
    key_file.parent.mkdir(parents=True, exist_ok=True)
    descriptor = os.open(key_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w") as handle:
        handle.write(secret + "\n")
    os.chmod(key_file, 0o600)  # also when the file existed with looser permissions
    return secret


class WorkerSupervisor(threading.Thread):
    """Keeps one worker child process running: restarts it when it dies, stops it on request."""

    def __init__(self, command: list[str], env: dict[str, str]) -> None:
        super().__init__(name="trainctl-worker-supervisor", daemon=True)
        self.command, self.env = command, env
        self.process: subprocess.Popen[bytes] | None = None
        self._stopping = threading.Event()
        self.restarts = 0

    def run(self) -> None:
        failures = 0
        while not self._stopping.is_set():
            started = time.monotonic()
            # Its own session: Ctrl-C reaches only `serve`, which then stops the worker in order.
            self.process = subprocess.Popen(
                self.command, env=self.env, start_new_session=True, preexec_fn=die_with_parent
            )
            code = self.process.wait()
            if self._stopping.is_set():
                return
            # A worker that ran a while before dying gets restarted at once; a crash loop backs off.
            failures = 0 if time.monotonic() - started > 60 else failures + 1
            delay = RESTART_BACKOFF_S[min(failures, len(RESTART_BACKOFF_S) - 1)]
            log.warning("worker exited with code %s; restarting in %.0f s", code, delay)
            self.restarts += 1
            if self._stopping.wait(delay):
                return

    def stop(self) -> None:
        """Warm-stop the worker (it hands its running job back), then kill it if it takes too long."""
        self._stopping.set()
        process = self.process
        if process is None or process.poll() is not None:
            return
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=WORKER_STOP_GRACE_S)
        except subprocess.TimeoutExpired:
            log.warning("worker did not stop within %.0f s; killing it", WORKER_STOP_GRACE_S)
            process.kill()
            process.wait()


def serve(settings: Settings, *, host: str, port: int, worker_args: list[str]) -> None:
    """Run migrations, make a first key, then the API in this process and a supervised worker child."""
    from api.main import create_app
    from core.broker import make_celery
    from core.migrate import upgrade_database
    from core.reaper import ReaperThread
    from trainctl.http import run_api

    settings.data_dir.mkdir(parents=True, exist_ok=True)
    # One serve per data directory: two would run two sets of workers on one database.
    lock = DataDirLock(settings.data_dir)
    lock.acquire()
    upgrade_database(settings.resolved_database_url)
    secret = ensure_first_key(settings)
    if secret is not None:
        print(f"Created the first API key (shown once; also in {settings.data_dir / 'api-key'}):")
        print(f"  {secret}", flush=True)

    # The only worker takes every queue, so that no job waits for a worker that does not exist.
    queues = ",".join(sorted({"cpu", "gpu", settings.default_queue}))
    worker_args = ["--queues", queues, *worker_args]
    # The worker watches this pid: when serve is gone (even SIGKILLed), the worker and its pool follow.
    env = dict(os.environ, TRAINCTL_DATA_DIR=str(settings.data_dir.resolve()))
    env[SUPERVISOR_PID_ENV] = str(os.getpid())
    worker = WorkerSupervisor([sys.executable, "-m", "trainctl", "worker", *worker_args], env)
    worker.start()
    reaper_engine = engine_for(settings)
    reaper = ReaperThread(
        sessions=make_session_factory(reaper_engine), celery_app=make_celery(settings), settings=settings
    )
    reaper.start()
    # uvicorn handles Ctrl-C and SIGTERM, then re-raises the signal to the handlers it found: make those
    # harmless, so that run() returns, the worker is stopped in order below, and the exit code is 0.
    stop_signals = (signal.SIGINT, signal.SIGTERM)
    previous = {sig: signal.signal(sig, lambda *_args: None) for sig in stop_signals}
    try:
        run_api(create_app(settings), host=host, port=port, read_timeout=settings.request_read_timeout)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        reaper.stop()
        worker.stop()
        reaper_engine.dispose()
        lock.release()


def data_dir_of(path: Path) -> Path:
    """The data dir as an absolute path (children may run elsewhere)."""
    return path.expanduser().resolve()
