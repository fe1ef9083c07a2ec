"""The import rules of the house (docs/architecture.md), checked on the source and in fresh interpreters."""

from __future__ import annotations

import ast
import subprocess
import sys
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("training", "core", "api", "worker", "trainctl")
# What each package must never import (a prefix matches the module and its submodules).
FORBIDDEN = {
    "training": ("core", "api", "worker", "trainctl"),
    "core": ("api", "worker", "trainctl", "fastapi", "starlette"),
    "api": ("worker", "trainctl"),
    "worker": ("api", "trainctl", "fastapi", "starlette"),
}
CORE_MAY_USE_FROM_TRAINING = ("training.spec", "training.records")


def _module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path) -> set[str]:
    """Every module `path` imports, at module level or inside functions (the house uses absolute imports)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            assert not node.level, f"{path}: relative import"
            found.add(node.module or "")
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
    return found


def _is_under(module: str, prefix: str) -> bool:
    return module == prefix or module.startswith(prefix + ".")


def _sources() -> dict[str, set[str]]:
    """Module name -> modules it imports, for every source file of the five packages."""
    return {
        _module_name(path): _imports(path)
        for package in PACKAGES
        for path in sorted((ROOT / package).rglob("*.py"))
    }


def test_packages_import_only_what_the_layering_allows() -> None:
    broken = [
        f"{module} imports {imported}"
        for module, imported_modules in _sources().items()
        for imported in sorted(imported_modules)
        for banned in FORBIDDEN.get(module.split(".")[0], ())
        if _is_under(imported, banned)
    ]
    assert not broken, "\n".join(broken)


def test_core_uses_only_the_torch_free_contract_of_training() -> None:
    broken = [
        f"{module} imports {imported}"
        for module, imported_modules in _sources().items()
        if module.split(".")[0] == "core"
        for imported in sorted(imported_modules)
        if _is_under(imported, "training")
        and not any(_is_under(imported, allowed) for allowed in CORE_MAY_USE_FROM_TRAINING)
    ]
    assert not broken, "\n".join(broken)


def test_routers_do_not_import_routers() -> None:
    broken = [
        f"{module} imports {imported}"
        for module, imported_modules in _sources().items()
        if module.endswith(".router")
        for imported in sorted(imported_modules)
        if imported.endswith(".router") and imported != module
    ]
    assert not broken, "\n".join(broken)


def _folder(module: str) -> str:
    """The folder a module lives in: `api.jobs.service` -> `api.jobs`, `api.errors` -> `api`."""
    parts = module.split(".")
    if parts[0] not in PACKAGES:
        return ""
    depth = 2 if (ROOT / "/".join(parts[:2])).is_dir() else 1
    return ".".join(parts[:depth])


def test_no_import_cycle_between_folders() -> None:
    edges: dict[str, set[str]] = defaultdict(set)
    for module, imported_modules in _sources().items():
        for imported in imported_modules:
            source, target = _folder(module), _folder(imported)
            if target and source != target and not _is_under(source, target):
                edges[source].add(target)
    # A folder may use its parent's top-level modules (api.jobs -> api.errors); any other loop is a cycle.
    cycles = []
    for start in list(edges):
        stack, seen = [(start, [start])], set()
        while stack:
            node, path = stack.pop()
            for nxt in edges.get(node, ()):
                if nxt == start:
                    cycles.append(" -> ".join([*path, start]))
                elif nxt not in seen:
                    seen.add(nxt)
                    stack.append((nxt, [*path, nxt]))
    assert not cycles, "\n".join(sorted(set(cycles)))


def modules_after(statement: str) -> set[str]:
    """The top-level modules a fresh interpreter has loaded after running `statement`."""
    probe = f"{statement}\nimport sys\nprint(' '.join(sorted({{m.split('.')[0] for m in sys.modules}})))"
    output = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    return set(output.stdout.split())


def test_worker_does_not_import_fastapi() -> None:
    loaded = modules_after("import worker.tasks, worker.runner")
    assert "fastapi" not in loaded and "starlette" not in loaded
    assert "api" not in loaded


def test_core_imports_neither_fastapi_nor_torch() -> None:
    loaded = modules_after("import core.reaper, core.lifecycle, core.broker, core.artifacts, core.migrate")
    assert not {"fastapi", "starlette", "api", "worker", "torch"} & loaded


def test_api_imports_neither_worker_nor_torch() -> None:
    loaded = modules_after("import api.main")
    assert "worker" not in loaded
    assert "torch" not in loaded, "the API must start without paying for torch"


def test_cli_starts_without_torch() -> None:
    assert "torch" not in modules_after("import trainctl.cli, trainctl.server, trainctl.workerproc")
