"""bench/gpu.py: its CPU-side checks pass here (--dry-run), so the script is ready for a CUDA machine."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.slow


def test_gpu_script_dry_run_passes() -> None:
    env_free = {"PATH": "/usr/bin:/bin", "HOME": str(ROOT)}
    run = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "gpu.py"), "--dry-run", "--replicas", "2"],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=ROOT,
        env=env_free,
    )
    assert run.returncode == 0, run.stdout + run.stderr
    for check in ("1+5 end to end", "2 replica group", "3 bf16", "4 resume after SIGKILL"):
        assert f"PASS {check}" in run.stdout, run.stdout
    assert "| 2 jobs as one group |" in run.stdout
