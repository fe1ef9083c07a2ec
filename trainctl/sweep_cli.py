"""Client commands over many jobs: sweep (with --grid and --wait) and compare."""

from __future__ import annotations

import json
from typing import Annotated, Any

import typer
from rich import box
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn
from rich.table import Table as RichTable

from trainctl.cli_common import (
    EXIT_FAILED,
    EXIT_USAGE,
    KeyOption,
    SpecArg,
    TimeoutOption,
    UrlOption,
    connect,
    die,
    err_console,
    fmt,
    fmt_seconds,
    out_console,
    read_spec,
)
from trainctl.client import FINISHED, Client
from trainctl.compare_layout import (
    FIELDS_AS_ROWS_UP_TO,
    cell,
    fields_as_rows,
    job_label,
    short_headers,
    tested_metrics,
)
from trainctl.compare_view import TABLE_WIDTH, effects_table, groups_table
from trainctl.compare_view import notes as compare_notes
from training.records import is_maximized

CSV_TABLES = ("jobs", "groups", "effects", "bands")


def parse_grid_values(text: str) -> list[Any]:
    """`a,b,[1,2]` -> ['a', 'b', [1, 2]]: comma-separated, each JSON when it parses, else a string."""
    stripped = text.strip()
    if stripped.startswith("["):
        try:
            whole = json.loads(stripped)
        except ValueError:
            whole = None
        if isinstance(whole, list) and (not whole or all(isinstance(v, list) for v in whole)):
            return whole  # a JSON list of lists: the values themselves are lists
    parts, depth, start, quote = [], 0, 0, False
    for index, char in enumerate(text):
        if char == '"':
            quote = not quote
        elif not quote and char in "[{":
            depth += 1
        elif not quote and char in "]}":
            depth -= 1
        elif not quote and depth == 0 and char == ",":
            parts.append(text[start:index])
            start = index + 1
    parts.append(text[start:])
    values: list[Any] = []
    for part in (p.strip() for p in parts):
        if not part:
            raise ValueError("empty value")
        try:
            values.append(json.loads(part))
        except ValueError:
            values.append(part)
    return values


def parse_grid(options: list[str]) -> dict[str, list[Any]]:
    """--grid PATH=V1,V2 options into {path: values}; exit 2 on bad syntax."""
    grid: dict[str, list[Any]] = {}
    for option in options:
        path, sep, values = option.partition("=")
        path = path.strip()
        if not sep or not path or " " in path:
            raise die(f"--grid {option!r}: expected PATH=V1,V2 (e.g. activation=sigmoid,relu)", EXIT_USAGE)
        if path in grid:
            raise die(f"--grid {path}: given twice", EXIT_USAGE)
        try:
            grid[path] = parse_grid_values(values)
        except ValueError as error:
            raise die(f"--grid {option!r}: {error}", EXIT_USAGE) from error
    return grid


def sweep(
    spec_file: SpecArg,
    grid: Annotated[
        list[str] | None,
        typer.Option("--grid", help="PATH=V1,V2: a dotted spec path and its values (JSON or text); repeat."),
    ] = None,
    seeds: Annotated[int, typer.Option(min=1, help="Runs per grid point (seed, seed+1, ...).")] = 1,
    name: Annotated[str | None, typer.Option(help="The sweep's name (default: the spec file's).")] = None,
    tag: Annotated[list[str] | None, typer.Option("--tag", help="A tag for every job (repeat).")] = None,
    wait: Annotated[bool, typer.Option("--wait", help="Wait for every job (exit 1 if any failed).")] = False,
    timeout: TimeoutOption = None,
    url: UrlOption = None,
    key: KeyOption = None,
) -> None:
    """Run one job per grid point × seed; prints the sweep id (and, with --wait, the outcome)."""
    spec, _name, _tags = read_spec(spec_file)
    parsed = parse_grid(grid or [])
    if not parsed:
        raise die("give at least one --grid PATH=V1,V2", EXIT_USAGE)
    errors = err_console()
    with connect(url, key) as client:
        created = client.sweep(spec, parsed, seeds=seeds, name=name or spec_file.stem, tags=tag)
        typer.echo(created["id"])
        shape = " × ".join(str(len(values)) for values in parsed.values())
        errors.print(
            f"sweep {created['id']}: {len(created.get('jobs', []))} jobs ({shape} grid × {seeds} seeds)"
        )
        if not wait:
            return
        done = wait_for_sweep(client, created["id"], len(created.get("jobs", [])), timeout, errors)
    counts = {status: n for status, n in done.get("counts", {}).items() if n}
    errors.print(f"sweep {done['id']}: " + ", ".join(f"{n} {status}" for status, n in sorted(counts.items())))
    errors.print(f"compare with: trainctl compare --sweep {done['id']}")
    if counts.get("failed") or counts.get("cancelled"):
        raise typer.Exit(EXIT_FAILED)


def wait_for_sweep(
    client: Client, sweep_id: str, size: int, timeout: float | None, console: Console
) -> dict[str, Any]:
    """Wait for a sweep with a bar of finished jobs (lines when not on a terminal)."""

    def finished(sweep: dict[str, Any]) -> int:
        return sum(n for status, n in sweep.get("counts", {}).items() if status in FINISHED)

    if not console.is_terminal:

        def line(sweep: dict[str, Any]) -> None:
            counts = ", ".join(f"{n} {s}" for s, n in sorted(sweep.get("counts", {}).items()) if n)
            console.print(f"{finished(sweep)}/{size} jobs finished ({counts})")

        return client.wait_sweep(sweep_id, timeout=timeout, on_progress=line)
    bar = Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        TextColumn("{task.completed:.0f}/{task.total:.0f} jobs"),
        TextColumn("{task.fields[counts]}"),
        console=console,
    )
    with bar:
        task = bar.add_task(sweep_id, total=size, counts="")

        def update(sweep: dict[str, Any]) -> None:
            counts = ", ".join(f"{n} {s}" for s, n in sorted(sweep.get("counts", {}).items()) if n)
            bar.update(task, completed=finished(sweep), counts=counts)

        return client.wait_sweep(sweep_id, timeout=timeout, on_progress=update)


def _value(metrics: dict[str, Any] | None, name: str) -> Any:
    return (metrics or {}).get(name)


def is_grouped(result: dict[str, Any]) -> bool:
    """Whether any configuration ran more than once: then rows are seed groups, not jobs."""
    return any(group.get("n", 1) > 1 for group in result.get("groups") or [])


def jobs_as_rows(result: dict[str, Any], metric: str, columns: list[str], best_id: str | None) -> RichTable:
    """Many jobs: one row per job, the differing fields under short headers, numbers in their own columns."""
    jobs = result.get("jobs", [])
    headers = short_headers(columns)
    target = result.get("target")
    tests = tested_metrics(jobs)[:1]  # the headline test metric; --json or --csv has every one
    table = RichTable(title=f"compare by {metric}", title_justify="left", box=box.SIMPLE_HEAD)
    table.add_column("")
    table.add_column("job", overflow="fold")
    for column in columns:
        table.add_column(headers[column], overflow="fold")
    for header in (f"best {metric}", *tests, *([f"epochs to {target}"] if target else []), "time"):
        table.add_column(header, justify="right", no_wrap=True)
    for job in jobs:
        is_best = job["id"] == best_id
        cells = ["★" if is_best else "", job_label(job)]
        cells += [cell((job.get("differs") or {}).get(column)) for column in columns]
        cells += [fmt(_value(job.get("best"), metric))]
        cells += [fmt((job.get("test") or {}).get(name)) for name in tests]
        cells += [fmt(job.get("epochs_to_target"))] if target else []
        cells.append(fmt_seconds(job.get("seconds")))
        table.add_row(*cells, style="bold green" if is_best else None)
    return table


def compare_table(result: dict[str, Any], metric: str) -> tuple[RichTable, list[str]]:
    """The comparison as a rich table (one row per seed group when any group has n > 1) and notes."""
    jobs = result.get("jobs", [])
    groups = result.get("groups") or []
    notes: list[str] = []
    if is_grouped(result):
        if not any(group.get("key") for group in groups) and len(jobs) > 1:
            notes.append("note: the specs are identical but for the seed; only chance separates them.")
        return groups_table(result, metric), notes
    columns = list(dict.fromkeys(path for job in jobs for path in job.get("differs") or {}))
    values = [(_value(job.get("best"), metric), job["id"]) for job in jobs]
    present = [(v, i) for v, i in values if isinstance(v, int | float)]
    mode = result.get("mode") or ("max" if is_maximized(metric) else "min")
    best_id = (max(present) if mode == "max" else min(present))[1] if present else None
    if len(jobs) <= FIELDS_AS_ROWS_UP_TO:
        table = fields_as_rows(result, metric, columns, best_id)
    else:
        table = jobs_as_rows(result, metric, columns, best_id)
    if not columns and len(jobs) > 1:
        notes.append("note: the specs are identical but for nothing shown; only chance separates them.")
    return table, notes


def compare(
    job_ids: Annotated[
        list[str] | None, typer.Argument(help="Job ids to compare.", show_default=False)
    ] = None,
    sweep_id: Annotated[str | None, typer.Option("--sweep", help="Compare every job of this sweep.")] = None,
    metric: Annotated[str, typer.Option(help="The metric that ranks jobs and groups.")] = "val_loss",
    mode: Annotated[str | None, typer.Option(help="min or max (default: the server's choice).")] = None,
    target: Annotated[str | None, typer.Option(help="Count epochs to reach it, e.g. 'val_loss<0.3'.")] = None,
    alpha: Annotated[float, typer.Option(help="Significance level of the verdicts (0 < alpha < 1).")] = 0.05,
    csv: Annotated[bool, typer.Option("--csv", help="Print a flat CSV table (every field) instead.")] = False,
    table: Annotated[
        str, typer.Option(help="With --csv: jobs, groups (statistics and tests), effects or bands.")
    ] = "jobs",
    as_json: Annotated[bool, typer.Option("--json", help="Print the comparison as JSON.")] = False,
    url: UrlOption = None,
    key: KeyOption = None,
) -> None:
    """Compare jobs: per seed group mean ± 95% CI, and the best group tested against each other group."""
    if bool(job_ids) == bool(sweep_id):
        raise die("give job ids or --sweep ID (one of them)", EXIT_USAGE)
    if mode is not None and mode not in {"min", "max"}:
        raise die("--mode must be min or max", EXIT_USAGE)
    if not 0 < alpha < 1:
        raise die("--alpha must be between 0 and 1, e.g. 0.05", EXIT_USAGE)
    if table not in CSV_TABLES:
        raise die(f"--table must be one of {', '.join(CSV_TABLES)}", EXIT_USAGE)
    params = {"metric": metric, "mode": mode, "target": target, "alpha": alpha}
    with connect(url, key) as client:
        if csv:
            text = client.compare_csv(jobs=job_ids or None, sweep=sweep_id, table=table, **params)
            typer.echo(text, nl=False)
            return
        result = client.compare(jobs=job_ids or None, sweep=sweep_id, **params)
    if as_json:
        typer.echo(json.dumps(result, indent=2))
        return
    console = out_console()
    common = result.get("common") or {}
    if common:
        shown = ", ".join(f"{k}={fmt(v)}" for k, v in list(common.items())[:8])
        more = f" (+{len(common) - 8} more)" if len(common) > 8 else ""
        console.print(f"common: {shown}{more}")
    grid, notes = compare_table(result, metric)
    narrow = min(console.width, TABLE_WIDTH)  # seed groups fit 100 columns; per-job rows may be wider
    console.print(grid, width=narrow if is_grouped(result) else None)
    effects = effects_table(result)
    if effects is not None:
        console.print(effects, width=narrow)
    for note in [*notes, *compare_notes(result, sweep_id)]:
        console.print(note)


def add_seeds(
    sweep_id: Annotated[str, typer.Argument(help="The sweep's id.", show_default=False)],
    seeds: Annotated[int, typer.Argument(min=1, help="Seeds per grid point in total.", show_default=False)],
    wait: Annotated[bool, typer.Option("--wait", help="Wait for every job (exit 1 if any failed).")] = False,
    timeout: TimeoutOption = None,
    url: UrlOption = None,
    key: KeyOption = None,
) -> None:
    """Give every grid point of a sweep SEEDS seeds: runs only the missing ones (prints their ids)."""
    errors = err_console()
    with connect(url, key) as client:
        done = client.add_seeds(sweep_id, seeds)
        added = done.get("added", [])
        for job_id in added:
            typer.echo(job_id)
        errors.print(f"sweep {sweep_id}: {len(added)} jobs added ({seeds} seeds per grid point)")
        if not wait:
            return
        done = wait_for_sweep(client, sweep_id, len(done.get("jobs", [])), timeout, errors)
    errors.print(f"compare with: trainctl compare --sweep {sweep_id}")
    if any(job["status"] in {"failed", "cancelled"} for job in done.get("jobs", []) if job["id"] in added):
        raise typer.Exit(EXIT_FAILED)
