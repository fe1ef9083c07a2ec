"""Import rules of shared/DESIGN.md on the worker side, checked in fresh interpreters."""

from __future__ import annotations

import subprocess
import sys


def modules_after(statement: str) -> set[str]:
    """The top-level modules a fresh interpreter has loaded after running `statement`."""
    probe = f"{statement}\nimport sys\nprint(' '.join(sorted({{m.split('.')[0] for m in sys.modules}})))"
    output = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    return set(output.stdout.split())


def test_worker_does_not_import_fastapi() -> None:
    loaded = modules_after("import worker.tasks, worker.runner")
    assert "fastapi" not in loaded and "starlette" not in loaded


def test_api_imports_neither_worker_nor_torch() -> None:
    loaded = modules_after("import api.main, api.broker, api.jobs.sweep, api.jobs.lifecycle")
    assert "worker" not in loaded
    assert "torch" not in loaded, "the API must start without paying for torch"


def test_cli_starts_without_torch() -> None:
    assert "torch" not in modules_after("import trainctl.cli, trainctl.server, trainctl.workerproc")
