"""Making a comparison of unrelated jobs readable at 80 columns: short headers, flat cells, job labels."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from rich import box
from rich.table import Table as RichTable

from trainctl.cli_common import fmt, fmt_seconds

# Long spec words shortened in column headers (the full paths are in `trainctl compare --json`).
HEADER_WORDS = {
    "learning_rate": "lr",
    "hidden_layers": "hidden",
    "normalization": "norm",
    "initialization": "init",
    "generalization": "gen",
    "early_stopping": "early_stop",
    "weight_decay": "wd",
    "batch_size": "batch",
}
GENERIC_TAILS = frozenset({"name", "id", "type", "kind"})  # `name` alone says nothing: `opt.name`
FIELDS_AS_ROWS_UP_TO = 3  # jobs: up to this many, one column per job (fits 80 columns at any spec diff)


def _short(parts: list[str]) -> str:
    return ".".join(HEADER_WORDS.get(part, part) for part in parts)


def short_headers(paths: Iterable[str]) -> dict[str, str]:
    """Each dotted spec path by its shortest unique tail, long words abbreviated (`optimizer.learning_rate`
    -> `lr`, `network.hidden_layers` -> `hidden`), never cut mid-word."""
    paths = list(paths)
    headers: dict[str, str] = {}
    for path in paths:
        parts = path.split(".")
        for take in range(2 if parts[-1] in GENERIC_TAILS and len(parts) > 1 else 1, len(parts) + 1):
            tail = parts[-take:]
            clashes = [other for other in paths if other != path and other.split(".")[-take:] == tail]
            if not clashes:
                headers[path] = _short(tail)
                break
        else:
            headers[path] = _short(parts)
    return headers


def cell(value: Any) -> str:
    """A spec value for a cell: numbers and words as they are, lists as `64x64`, objects as `k=v` pairs."""
    if isinstance(value, Mapping):
        return " ".join(f"{key}={cell(item)}" for key, item in value.items())
    if isinstance(value, list) and all(isinstance(item, int | float | str) for item in value):
        return "x".join(str(item) for item in value) if value else "[]"
    return fmt(value)


def job_label(job: Mapping[str, Any]) -> str:
    """A job by its name when it has one (the id otherwise)."""
    return str(job.get("name") or job["id"])


def tested_metrics(jobs: Iterable[Mapping[str, Any]]) -> list[str]:
    """The test metrics any job has, accuracy first."""
    names = dict.fromkeys(
        name for job in jobs for name, value in (job.get("test") or {}).items() if value is not None
    )
    return sorted(names, key=lambda name: (not name.endswith("accuracy"), name))


def fields_as_rows(
    result: Mapping[str, Any], metric: str, columns: list[str], best_id: str | None
) -> RichTable:
    """Few unrelated jobs: one column per job, one row per differing field and per number."""
    jobs = list(result.get("jobs", []))
    target = result.get("target")
    table = RichTable(title=f"compare by {metric} (★ best)", title_justify="left", box=box.SIMPLE_HEAD)
    table.add_column("")
    for job in jobs:
        star = " ★" if job["id"] == best_id else ""
        table.add_column(job_label(job) + star, overflow="fold", style="bold green" if star else None)
    rows: list[tuple[str, list[str]]] = [("status", [str(job.get("status", "")) for job in jobs])]
    headers = short_headers(columns)
    rows += [(headers[c], [cell((job.get("differs") or {}).get(c)) for job in jobs]) for c in columns]
    rows.append((f"best {metric}", [fmt((job.get("best") or {}).get(metric)) for job in jobs]))
    rows.append(("best epoch", [fmt(job.get("best_epoch")) for job in jobs]))
    rows += [
        (name, [fmt((job.get("test") or {}).get(name)) for job in jobs]) for name in tested_metrics(jobs)
    ]
    if target:
        rows.append((f"epochs to {target}", [fmt(job.get("epochs_to_target")) for job in jobs]))
    rows.append(("time", [fmt_seconds(job.get("seconds")) for job in jobs]))
    for label, cells in rows:
        table.add_row(label, *cells)
    return table
