"""How a worker process is launched: the Celery command line and the environment it needs."""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from pathlib import Path

# glibc returns freed memory to the OS (and faults it back in) at every step of a small training loop;
# raising these thresholds keeps it in the process: measured +21% to +47% throughput on this machine.
MALLOC_ENV = {
    "MALLOC_MMAP_THRESHOLD_": str(32 * 1024 * 1024),  # glibc's ceiling for this setting
    "MALLOC_TRIM_THRESHOLD_": str(1024 * 1024 * 1024),
    "MALLOC_TOP_PAD_": str(64 * 1024 * 1024),
}
DEFAULT_CPU_CONCURRENCY = 2  # two 1-thread jobs beat one 2-thread job on small networks (bench/service.py)


@dataclass(frozen=True)
class WorkerPlan:
    """What one worker process will do: which device, queues, how many jobs at once, threads per job."""

    device: str  # cpu, or cuda:N
    queues: list[str]
    concurrency: int
    threads: int
    beat: bool = False
    pin_device: bool = False  # --device given: hide every other device from the worker


def cuda_available() -> bool:
    """Whether this host has a usable GPU; imports torch (seconds) only where an NVIDIA driver is present."""
    if not any(Path(marker).exists() for marker in ("/proc/driver/nvidia/version", "/dev/nvidiactl")):
        return False
    import torch

    return bool(torch.cuda.is_available())


def plan_worker(
    *,
    device: str | None,
    queues: str | None,
    concurrency: int | None,
    threads: int | None,
    beat: bool = False,
    cpu_count: int | None = None,
) -> WorkerPlan:
    """Fill in defaults: GPU hosts run one job per worker on the gpu queue; CPU hosts share the cores."""
    if device is not None and device != "cpu" and not device.startswith("cuda:"):
        raise ValueError(f"--device must be cpu or cuda:N (e.g. cuda:1), not {device!r}")
    on_gpu = device.startswith("cuda:") if device is not None else cuda_available()
    queue_list = [q.strip() for q in (queues or ("gpu" if on_gpu else "cpu")).split(",") if q.strip()]
    if not queue_list:
        raise ValueError("--queues needs at least one queue name (e.g. cpu or gpu)")
    jobs = concurrency or (1 if on_gpu else DEFAULT_CPU_CONCURRENCY)
    cores = cpu_count or os.cpu_count() or 1
    # Without --device a GPU worker uses the first GPU it may see (CUDA_VISIBLE_DEVICES is respected).
    visible = os.environ.get("CUDA_VISIBLE_DEVICES", "0").split(",")[0].strip() or "0"
    return WorkerPlan(
        device=device or (f"cuda:{visible}" if on_gpu else "cpu"),
        pin_device=device is not None,
        queues=queue_list,
        concurrency=jobs,
        threads=threads or max(1, cores // jobs),
        beat=beat,
    )


def worker_command(plan: WorkerPlan, *, data_dir: Path) -> list[str]:
    """The `celery worker` command line for a plan."""
    command = [
        sys.executable,
        "-m",
        "celery",
        "--app",
        "worker.celery_app:celery_app",
        "worker",
        "--queues",
        ",".join(plan.queues),
        "--concurrency",
        str(plan.concurrency),
        # One job per process: solo runs it in the main process (SIGTERM reaches it directly).
        "--pool",
        "solo" if plan.concurrency == 1 else "prefork",
        "--hostname",
        f"{plan.queues[0]}-{os.getpid()}@%h",
        "--loglevel",
        "INFO",
        "--without-gossip",
        "--without-mingle",
    ]
    if plan.beat:
        command += ["--beat", "--schedule", str(data_dir / "celerybeat-schedule")]
    return command


def worker_environment(plan: WorkerPlan, base: dict[str, str] | None = None) -> dict[str, str]:
    """The environment of the worker process: malloc thresholds, torch threads, the GPU it owns."""
    env = dict(os.environ if base is None else base)
    env.update(MALLOC_ENV)
    env["TRAINCTL_WORKER_THREADS"] = str(plan.threads)
    env["TRAINCTL_WORKER_QUEUES"] = ",".join(plan.queues)
    # Intra-op pools sized by OMP/MKL too, so a 1-thread job does not spin idle threads.
    env["OMP_NUM_THREADS"] = str(plan.threads)
    env["MKL_NUM_THREADS"] = str(plan.threads)
    if not plan.pin_device:
        return env
    if plan.device.startswith("cuda:"):
        env["CUDA_VISIBLE_DEVICES"] = plan.device.split(":", 1)[1]
    elif plan.device == "cpu":
        env["CUDA_VISIBLE_DEVICES"] = ""  # a CPU worker on a GPU host must not train "auto" jobs on a GPU
    return env


def exec_worker(plan: WorkerPlan, *, data_dir: Path) -> None:
    """Replace this process by the Celery worker (same pid: signals from a supervisor reach it)."""
    command = worker_command(plan, data_dir=data_dir)
    os.execve(command[0], command, worker_environment(plan))
