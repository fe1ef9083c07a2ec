"""Client commands that find and organize runs: list, tag, note, delete; and workers, for operators."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Annotated, Any

import typer
from rich.table import Table as RichTable

from trainctl.cli_common import EXIT_USAGE, KeyOption, UrlOption, connect, die, fmt, fmt_seconds, out_console
from trainctl.client import Client

IdsArg = Annotated[
    list[str],
    typer.Argument(help="Ids: job_..., sw_... (a sweep) or ds_... (a dataset).", show_default=False),
]
JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")]


def ago(stamp: str | None) -> str:
    """`3m12s ago` for an ISO timestamp."""
    if not stamp:
        return "-"
    seconds = (datetime.now(UTC) - datetime.fromisoformat(stamp.replace("Z", "+00:00"))).total_seconds()
    return f"{fmt_seconds(seconds)} ago"


def headline(job: dict[str, Any], sort: str | None) -> str:
    """The number a listed job is known by: the sort metric, else test accuracy or the best val_loss."""
    result = job.get("result") or {}
    test, best = result.get("test") or {}, result.get("best") or {}
    wanted = (sort or "").lstrip("-")
    for name in (wanted, "test_accuracy", "test_rmse", "val_loss"):
        value = (test if name.startswith("test_") else best).get(name) if name else None
        if isinstance(value, int | float):
            return f"{name} {fmt(value, 3)}"
    return ""


def list_jobs(
    status: Annotated[
        str | None, typer.Option(help="queued, running, succeeded, failed or cancelled.")
    ] = None,
    tag: Annotated[str | None, typer.Option(help="Only jobs with this tag.")] = None,
    name: Annotated[str | None, typer.Option(help="Only jobs with this name.")] = None,
    sweep: Annotated[str | None, typer.Option(help="Only the jobs of this sweep.")] = None,
    sort: Annotated[
        str | None, typer.Option(help="-created (default), created, or a metric: -test_accuracy, val_loss.")
    ] = None,
    limit: Annotated[int, typer.Option(min=1, max=10_000, help="At most this many jobs.")] = 20,
    as_json: JsonOption = False,
    url: UrlOption = None,
    key: KeyOption = None,
) -> None:
    """List your jobs, newest first (or by --sort), as a table that fits 80 columns."""
    with connect(url, key) as client:
        jobs = client.jobs(status=status, tag=tag, name=name, sweep=sweep, sort=sort, limit=limit)
    if as_json:
        typer.echo(json.dumps(jobs, indent=2))
        return
    table = RichTable(box=None, pad_edge=False, header_style="bold")
    table.add_column("ID", no_wrap=True)
    table.add_column("NAME", max_width=18, overflow="ellipsis", no_wrap=True)
    table.add_column("STATUS", no_wrap=True)
    table.add_column("EPOCH", justify="right", no_wrap=True)
    table.add_column("RESULT", no_wrap=True)
    table.add_column("CREATED", no_wrap=True)
    for job in jobs:
        progress = job["progress"]
        table.add_row(
            job["id"],
            job.get("name") or "-",
            job["status"],
            f"{progress['epoch']}/{progress['epochs']}",
            headline(job, sort),
            ago(job.get("created_at")),
        )
    out_console().print(table)


def _labels(client: Client, item_id: str) -> dict[str, Any]:
    if item_id.startswith("sw_"):
        return client.get_sweep(item_id)
    return client.get(item_id)


def tag(
    item_id: Annotated[str, typer.Argument(help="A job id, or a sweep id (its jobs get the tags too).")],
    tags: Annotated[list[str] | None, typer.Argument(help="Tags to add.", show_default=False)] = None,
    remove: Annotated[list[str] | None, typer.Option("--remove", help="A tag to take off (repeat).")] = None,
    url: UrlOption = None,
    key: KeyOption = None,
) -> None:
    """Add (or --remove) tags of a job or a sweep; prints the tags it ends with."""
    if not tags and not remove:
        raise die("give tags to add, or --remove TAG", EXIT_USAGE)
    with connect(url, key) as client:
        current = _labels(client, item_id).get("tags") or []
        wanted = [t for t in dict.fromkeys([*current, *(tags or [])]) if t not in set(remove or [])]
        if item_id.startswith("sw_"):
            changed = client.update_sweep(item_id, tags=wanted)
        else:
            changed = client.update(item_id, tags=wanted)
    typer.echo(f"{item_id}: {', '.join(changed['tags']) or '(no tags)'}")


def note(
    item_id: Annotated[str, typer.Argument(help="A job id or a sweep id.")],
    text: Annotated[str | None, typer.Argument(help="The notes (replace the old ones).")] = None,
    clear: Annotated[bool, typer.Option("--clear", help="Remove the notes.")] = False,
    url: UrlOption = None,
    key: KeyOption = None,
) -> None:
    """Set the free-text notes of a job or a sweep (or print them when no text is given)."""
    if text is not None and clear:
        raise die("give notes or --clear, not both", EXIT_USAGE)
    with connect(url, key) as client:
        if text is None and not clear:
            typer.echo(_labels(client, item_id).get("notes") or "")
            return
        notes = None if clear else text
        if item_id.startswith("sw_"):
            client.update_sweep(item_id, notes=notes)
        else:
            client.update(item_id, notes=notes)
    typer.echo(f"{item_id}: notes {'cleared' if clear else 'set'}")


def delete(ids: IdsArg, url: UrlOption = None, key: KeyOption = None) -> None:
    """Delete finished jobs, finished sweeps (with their jobs) or datasets, with their files."""
    with connect(url, key) as client:
        for item_id in ids:
            if item_id.startswith("sw_"):
                client.delete_sweep(item_id)
            elif item_id.startswith("ds_"):
                client.delete_dataset(item_id)
            else:
                client.delete(item_id)
            typer.echo(f"{item_id} deleted")


def workers(
    seen_within: Annotated[float, typer.Option(min=1, help="Seconds to look back.")] = 3600,
    as_json: JsonOption = False,
    url: UrlOption = None,
    key: KeyOption = None,
) -> None:
    """The Celery workers seen recently (from their heartbeats: works on every broker)."""
    with connect(url, key) as client:
        found = client.workers(seen_within=seen_within)
    if as_json:
        typer.echo(json.dumps(found, indent=2))
        return
    table = RichTable(box=None, pad_edge=False, header_style="bold")
    for column in ("WORKER", "PID", "QUEUES", "DEVICE", "JOBS", "RUNNING", "SEEN"):
        table.add_column(column, no_wrap=column != "RUNNING")
    for worker in found:
        slots = f"{len(worker['current_jobs'])}/{worker.get('concurrency') or '?'}"
        table.add_row(
            worker["name"],
            str(worker.get("pid") or "-"),
            ",".join(worker["queues"]),
            worker["device"],
            slots,
            " ".join(worker["current_jobs"]) or "-",
            ago(worker["last_seen"]) + ("" if worker["alive"] else " (gone)"),
        )
    out_console().print(table if found else "no workers seen")
