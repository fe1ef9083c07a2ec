"""The worker's Celery app (broker from settings), its process set-up and the reaper schedule."""

from __future__ import annotations

import logging
import os
import signal
import socket
import threading
from typing import Any

from celery.signals import worker_init, worker_process_init, worker_shutting_down
from sqlalchemy.orm import Session, sessionmaker

from core.broker import REAPER_TASK, make_celery
from core.config import get_settings
from core.db import engine_for, make_session_factory
from core.process import SUPERVISOR_PID_ENV, die_with_parent, watch_parent
from worker.context import WorkerContext, WorkerIdentity, request_shutdown

log = logging.getLogger(__name__)

MAINTENANCE_QUEUE = "maintenance"
WORKER_BEAT_S = 15.0  # how often an idle worker says it is alive (health lists workers seen recently)
QUEUES_ENV = "TRAINCTL_WORKER_QUEUES"  # set by `trainctl worker`, shown in the worker beat row

celery_app = make_celery(get_settings())
celery_app.conf.update(
    include=["worker.tasks"],
    beat_schedule={
        "reaper": {
            "task": REAPER_TASK,
            "schedule": get_settings().reaper_interval,
            # A reaper pass that waited longer than one interval is superseded by the next one.
            "options": {"queue": MAINTENANCE_QUEUE, "expires": get_settings().reaper_interval},
        }
    },
)

ORPHAN_GRACE_S = 3.0  # how long a worker whose `serve` died may take to hand its jobs back

_context: WorkerContext | None = None
_main_pid: int | None = None  # the worker's main process (pool children check it is still there)
_prepared = False  # prepare_process() ran in this process
_reaper_sessions: sessionmaker[Session] | None = None
# The Celery worker this process belongs to, set in its main process before the pool forks (children
# inherit it): GET /v1/workers groups training processes by it.
_node: dict[str, Any] = {}


def worker_device() -> str:
    """What this process trains on: the GPU it was given (CUDA_VISIBLE_DEVICES), else the CPU."""
    import torch

    if torch.cuda.is_available():
        visible = os.environ.get("CUDA_VISIBLE_DEVICES", "").split(",")[0].strip()
        return f"cuda:{visible or torch.cuda.current_device()}"
    return "cpu"


def worker_context() -> WorkerContext:
    """This process's engine, sessions and store, created on first use (after the fork)."""
    global _context
    if _context is None:
        queues = os.environ.get(QUEUES_ENV, "")
        host = socket.gethostname()
        identity = WorkerIdentity(
            name=f"{host}:{os.getpid()}",
            device=worker_device(),
            queues=queues,
            node=_node.get("name"),
            host=host,
            pid=_node.get("pid", os.getpid()),
            concurrency=_node.get("concurrency"),
        )
        _context = WorkerContext(get_settings(), identity, celery_app)
    return _context


def reaper_sessions() -> sessionmaker[Session]:
    """Sessions for the reaper task (a maintenance worker needs no torch)."""
    global _reaper_sessions
    if _reaper_sessions is None:
        _reaper_sessions = make_session_factory(engine_for(get_settings()))
    return _reaper_sessions


def prepare_process() -> None:
    """Import torch, set its threads and warm it up once per process, so no job pays for it."""
    global _prepared
    if _prepared or not _trains():
        return  # a maintenance-only worker (the reaper) trains nothing and skips torch
    _prepared = True
    import torch

    import training
    import training.group

    settings = get_settings()
    if settings.worker_nice:
        # Requests to an API on the same host stay fast while jobs train (p99 reads in bench/load.py).
        os.setpriority(os.PRIO_PROCESS, 0, max(settings.worker_nice, os.getpriority(os.PRIO_PROCESS, 0)))
    threads = settings.worker_threads
    if threads:
        torch.set_num_threads(threads)
    training.make_deterministic()  # before any CUDA work: cuBLAS reads its workspace setting once
    if settings.worker_cuda_memory_fraction and torch.cuda.is_available():
        torch.cuda.set_per_process_memory_fraction(settings.worker_cuda_memory_fraction)
    training.warm_up()
    context = worker_context()
    try:
        context.beat(None, retry=False)
    except Exception:
        log.warning("could not record the worker beat at start", exc_info=True)
    context.start_beating(every=min(WORKER_BEAT_S, context.settings.heartbeat_timeout / 2))
    log.info("worker process ready: %d torch threads", torch.get_num_threads())


def _trains() -> bool:
    """Whether this worker takes training jobs (not only the maintenance queue)."""
    return set(os.environ.get(QUEUES_ENV, "").split(",")) != {MAINTENANCE_QUEUE}


@worker_process_init.connect
def _on_pool_child_start(**_kwargs: Any) -> None:
    # Sent in each prefork child, and by the solo pool in the main process itself.
    if _main_pid is not None and os.getpid() != _main_pid:
        # A pool child never outlives the worker that forked it: its job is left to the reaper.
        die_with_parent(signal.SIGKILL)
        if os.getppid() != _main_pid:
            os._exit(1)  # the worker died before the line above took effect
    prepare_process()


def _orphaned() -> None:
    """`trainctl serve` is gone: stop warmly (jobs hand back), and for sure within ORPHAN_GRACE_S."""
    # The deadline first: nothing below may keep an orphan alive.
    timer = threading.Timer(ORPHAN_GRACE_S, lambda: os._exit(1))
    timer.daemon = True
    timer.start()
    log.warning("trainctl serve is gone: stopping this worker within %.0f s", ORPHAN_GRACE_S)
    request_shutdown()
    os.kill(os.getpid(), signal.SIGTERM)  # Celery's warm shutdown


@worker_init.connect
def _on_worker_start(sender: Any = None, **_kwargs: Any) -> None:
    global _main_pid
    _main_pid = os.getpid()
    supervisor = os.environ.get(SUPERVISOR_PID_ENV)
    if supervisor:
        watch_parent(int(supervisor), _orphaned)
    _node.update(name=getattr(sender, "hostname", None), pid=os.getpid())
    _node["concurrency"] = getattr(sender, "concurrency", None)
    # With the solo pool the main process runs the jobs itself (prepared once, whichever signal comes).
    if "solo" in str(getattr(sender, "pool_cls", "")).lower():
        prepare_process()


@worker_shutting_down.connect
def _on_shutdown(**_kwargs: Any) -> None:
    # Warm shutdown: running jobs (here or in pool children) checkpoint at the next step and go back
    # to the queue. Celery calls this from its SIGTERM handler, which may interrupt the event's own lock.
    request_shutdown()
