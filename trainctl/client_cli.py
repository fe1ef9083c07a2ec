"""Client commands of `trainctl` (submit, status, watch, metrics, compare, sweep, download, plot, cancel).

Exit codes: 0 ok; 1 a job failed (or a sweep's job, or a watched job failed or was cancelled), or the
job, sweep or dataset named does not exist (404); 2 usage or validation error (bad spec file, bad --grid,
another 4xx answer); 3 the server is unreachable, answered 5xx, or a --wait timed out.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table as RichTable

from trainctl.cli_common import (
    EXIT_FAILED,
    EXIT_USAGE,
    LOSSES,
    JobArg,
    JobProgress,
    KeyOption,
    SpecArg,
    TimeoutOption,
    UrlOption,
    connect,
    die,
    err_console,
    exit_for,
    fmt,
    fmt_seconds,
    losses_text,
    out_console,
    print_summary,
    read_spec,
)
from trainctl.client import FINISHED, TrainctlError
from trainctl.organize_cli import delete, list_jobs, note, tag, workers
from trainctl.sweep_cli import add_seeds, compare, sweep
from training.records import is_maximized


def register_client_commands(app: typer.Typer) -> None:
    """Add the client commands to the `trainctl` app."""
    for command in (submit, status, watch, metrics, compare, sweep, add_seeds, download, plot, cancel):
        app.command(rich_help_panel="Client")(command)
    app.command("list", rich_help_panel="Client")(list_jobs)
    for organizing in (tag, note, delete, workers):
        app.command(rich_help_panel="Client")(organizing)


def submit(
    spec_file: SpecArg,
    name: Annotated[str | None, typer.Option(help="A label for people.")] = None,
    tag: Annotated[list[str] | None, typer.Option("--tag", help="A tag (repeat for more).")] = None,
    wait: Annotated[
        bool, typer.Option("--wait", help="Follow it with a progress bar until it ends.")
    ] = False,
    timeout: TimeoutOption = None,
    url: UrlOption = None,
    key: KeyOption = None,
) -> None:
    """Submit a job spec; prints the job id (with --wait: progress, then the result; exit 1 if it failed)."""
    spec, file_name, file_tags = read_spec(spec_file)
    errors = err_console()
    with connect(url, key) as client:
        job = client.submit(spec, name=name or file_name, tags=tag or file_tags or None)
        typer.echo(job["id"])
        for warning in job.get("warnings") or []:
            errors.print(f"[yellow]warning[/] {warning['field']}: {warning['message']} ({warning['code']})")
        if not wait:
            return
        with JobProgress(client, job, errors) as progress:
            job = client.wait(job["id"], timeout=timeout, on_progress=progress.update)
    print_summary(job, errors)
    exit_for(job)


def status(
    job_id: JobArg,
    as_json: Annotated[bool, typer.Option("--json", help="Print the job as JSON.")] = False,
    url: UrlOption = None,
    key: KeyOption = None,
) -> None:
    """Show a job: status, progress, result or error (exit 1 if it failed)."""
    with connect(url, key) as client:
        job = client.get(job_id)
    console = out_console()
    if as_json:
        typer.echo(json.dumps(job, indent=2))
    else:
        progress = job["progress"]
        name = f" ({job['name']})" if job.get("name") else ""
        console.print(f"{job['id']}{name}: {job['status']}, epoch {progress['epoch']}/{progress['epochs']}")
        if job["status"] == "running":
            console.print(f"  ETA {fmt_seconds(progress.get('eta_seconds'))} on {job.get('device') or '?'}")
        if job["status"] in FINISHED:
            print_summary(job, console)
    if job["status"] == "failed":
        raise typer.Exit(EXIT_FAILED)


def watch(job_id: JobArg, url: UrlOption = None, key: KeyOption = None) -> None:
    """Follow a job live from its events: a line per epoch, then the result (exit 1 unless it succeeded)."""
    console = out_console()
    with connect(url, key) as client:
        job = client.get(job_id)
        epochs = job["progress"]["epochs"]
        console.print(f"{job_id}: {job['status']}, {epochs} epochs")
        shown = job["status"]
        try:
            for event, data in client.events(job_id):
                if event == "epoch" and isinstance(data, dict):
                    extra = "  ".join(
                        f"{k} {fmt(v)}"
                        for k, v in data.items()
                        if k not in {"epoch", *LOSSES} and isinstance(v, int | float) and is_maximized(k)
                    )
                    console.print(
                        f"epoch {data.get('epoch')}/{epochs}  {losses_text(data)}  {extra}".rstrip()
                    )
                elif event == "status" and isinstance(data, dict) and data.get("status") != shown:
                    shown = data.get("status")
                    console.print(f"status {shown}")
        except TrainctlError as error:
            if error.status != 404:
                raise
            # A server without the event stream: follow by polling instead.
            with JobProgress(client, job, err_console()) as progress:
                client.wait(job_id, on_progress=progress.update)
        job = client.get(job_id)
    print_summary(job, console)
    exit_for(job)


def metrics(
    job_id: JobArg,
    csv: Annotated[bool, typer.Option("--csv", help="Print CSV (layer diagnostics flattened).")] = False,
    fields: Annotated[
        str | None, typer.Option(help="Comma-separated keys to keep, e.g. train_loss,val_loss.")
    ] = None,
    url: UrlOption = None,
    key: KeyOption = None,
) -> None:
    """Per-epoch metrics of a job as a table (or CSV)."""
    with connect(url, key) as client:
        if csv:
            typer.echo(client.metrics_csv(job_id, fields=fields), nl=False)
            return
        table = client.metrics_table(job_id, fields=fields)
    columns = [c for c in table.columns if c != "layers"]
    rich_table = RichTable(title=f"{job_id} metrics", title_justify="left")
    for column in columns:
        rich_table.add_column(column, justify="right")
    for record in table.records():
        rich_table.add_row(*(fmt(record.get(column)) for column in columns))
    out_console().print(rich_table)


def download(
    job_id: JobArg,
    checkpoint: Annotated[
        str, typer.Option(help="model (the weights result.test measured), best, last, or epoch-NNNNN.")
    ] = "model",
    output: Annotated[
        Path | None,
        typer.Option("-o", "--output", help="File to write (default JOB-CHECKPOINT.safetensors)."),
    ] = None,
    url: UrlOption = None,
    key: KeyOption = None,
) -> None:
    """Download a checkpoint (safetensors; load it with training.load_model)."""
    with connect(url, key) as client:
        path = client.download(job_id, checkpoint=checkpoint, path=output)
    typer.echo(f"{path} ({path.stat().st_size} bytes)")


def plot(
    job_ids: Annotated[list[str] | None, typer.Argument(help="Job ids to plot.", show_default=False)] = None,
    sweep_id: Annotated[str | None, typer.Option("--sweep", help="Plot every job of this sweep.")] = None,
    metric: Annotated[str, typer.Option(help="The per-epoch field to plot.")] = "val_loss",
    kind: Annotated[
        str,
        typer.Option(
            help="curves (learning curves of jobs or a sweep), or gradients / saturation (one job's layers)."
        ),
    ] = "curves",
    output: Annotated[Path, typer.Option("-o", "--output", help="PNG file to write.")] = Path("plot.png"),
    url: UrlOption = None,
    key: KeyOption = None,
) -> None:
    """Save a PNG: learning curves (mean and 95% CI per seed group), or one job's gradients or saturation."""
    if kind not in {"curves", "gradients", "saturation"}:
        raise die("--kind must be curves, gradients or saturation", EXIT_USAGE)
    if kind != "curves" and (sweep_id or len(job_ids or []) != 1):
        raise die(f"--kind {kind} plots one job: give exactly one job id", EXIT_USAGE)
    if kind == "curves" and bool(job_ids) == bool(sweep_id):
        raise die("give job ids or --sweep ID (one of them)", EXIT_USAGE)
    with connect(url, key) as client:
        if kind == "curves":
            path = client.plot(jobs=job_ids or None, sweep=sweep_id, metric=metric, path=output)
        else:
            path = client.job_plot((job_ids or [""])[0], kind=kind, path=output)
    typer.echo(f"{path} ({path.stat().st_size} bytes)")


def cancel(job_id: JobArg, url: UrlOption = None, key: KeyOption = None) -> None:
    """Cancel a queued or running job."""
    with connect(url, key) as client:
        job = client.cancel(job_id)
    typer.echo(f"{job['id']} {job['status']}{' (stopping)' if job.get('cancel_requested') else ''}")
