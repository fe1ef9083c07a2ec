"""The worker's Celery app with an address-space limit (RLIMIT_AS) set once torch is warm: a test-only app.

Jobs that need more memory than TRAINCTL_TEST_MEMORY_MARGIN_MB above the warm process fail for real, the
way they would on a host that ran out of memory, and the same process must go on to the next job.
"""

from __future__ import annotations

import os
import resource
from typing import Any

from celery.signals import worker_init

from worker.celery_app import celery_app  # connects the app's own worker_init (torch warm-up) first

__all__ = ["celery_app"]


def _address_space_bytes() -> int:
    with open("/proc/self/status") as status:
        line = next(line for line in status if line.startswith("VmSize:"))
    return int(line.split()[1]) * 1024


@worker_init.connect
def _limit_memory(**_kwargs: Any) -> None:
    margin = int(os.environ["TRAINCTL_TEST_MEMORY_MARGIN_MB"]) * 2**20
    limit = _address_space_bytes() + margin
    resource.setrlimit(resource.RLIMIT_AS, (limit, resource.getrlimit(resource.RLIMIT_AS)[1]))
    print(f"memory-limited worker: address space limited to {limit / 2**20:,.0f} MiB", flush=True)
