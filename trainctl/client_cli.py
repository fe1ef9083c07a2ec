"""Client commands of `trainctl` (submit, status, watch, metrics, compare, sweep, download, plot, cancel).

Exit codes: 0 ok; 1 a job failed (or a sweep's job, or a watched job failed or was cancelled);
2 usage or validation error (bad spec file, bad --grid, a 4xx answer); 3 the server is unreachable,
answered 5xx, or a --wait timed out.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.progress import BarColumn, Progress, TaskID, TextColumn
from rich.table import Table as RichTable

from trainctl.client import FINISHED, Client, ServerUnreachable, TrainctlError, WaitTimeout

EXIT_FAILED, EXIT_USAGE, EXIT_SERVICE = 1, 2, 3
LOSSES = ("train_loss", "val_loss")
SUMMARY_SUFFIXES = ("loss", "accuracy", "r2", "mae", "rmse")

UrlOption = Annotated[
    str | None,
    typer.Option(
        "--url",
        help="Server URL (env TRAINCTL_URL; default http://127.0.0.1:8000).",
        show_default=False,
    ),
]
KeyOption = Annotated[
    str | None,
    typer.Option(
        "--key",
        help="API key (env TRAINCTL_API_KEY; default: DATA_DIR/api-key, written by `trainctl serve`).",
        show_default=False,
    ),
]
JobArg = Annotated[str, typer.Argument(help="The job's id.", show_default=False)]
SpecArg = Annotated[
    Path, typer.Argument(help="A job spec as JSON (or a {name, tags, spec} body).", show_default=False)
]
TimeoutOption = Annotated[
    float | None, typer.Option("--timeout", min=0, help="Give up waiting after this many seconds (exit 3).")
]


def err_console() -> Console:
    """Progress and messages go to stderr so that stdout stays for ids, tables and CSV."""
    return Console(stderr=True, highlight=False, soft_wrap=True)


def out_console() -> Console:
    """Tables and results; piped output gets room for wide tables instead of 80 columns."""
    console = Console(highlight=False, soft_wrap=True)
    if not console.is_terminal:
        console = Console(highlight=False, soft_wrap=True, width=200)
    return console


def die(message: str, code: int) -> typer.Exit:
    """Print `message` on stderr and return the Exit to raise."""
    typer.secho(f"trainctl: {message}", err=True, fg=typer.colors.RED)
    return typer.Exit(code)


@contextmanager
def connect(url: str | None, key: str | None) -> Iterator[Client]:
    """A client whose errors become messages and exit codes."""
    client = Client(url, key)
    try:
        yield client
    except ServerUnreachable as error:
        raise die(str(error), EXIT_SERVICE) from error
    except TrainctlError as error:
        message = str(error)
        if error.status == 401 and not client.api_key:
            message += "\n  no API key: pass --key, set TRAINCTL_API_KEY, or run where var/api-key is"
        raise die(message, EXIT_USAGE if 400 <= error.status < 500 else EXIT_SERVICE) from error
    except WaitTimeout as error:
        raise die(str(error), EXIT_SERVICE) from error
    finally:
        client.close()


def read_json_file(path: Path) -> dict[str, Any]:
    """A JSON object from a file, or exit 2 with the reason."""
    try:
        value = json.loads(path.read_text())
    except OSError as error:
        raise die(f"{path}: {error.strerror or error}", EXIT_USAGE) from error
    except ValueError as error:
        raise die(f"{path}: not valid JSON ({error})", EXIT_USAGE) from error
    if not isinstance(value, dict):
        raise die(f"{path}: expected a JSON object (a job spec)", EXIT_USAGE)
    return value


def read_spec(path: Path) -> tuple[dict[str, Any], str | None, list[str]]:
    """A spec file: a bare spec, or a request body {name, tags, spec}."""
    value = read_json_file(path)
    if isinstance(value.get("spec"), dict):
        return value["spec"], value.get("name"), list(value.get("tags") or [])
    return value, None, []


def fmt(value: Any, digits: int = 4) -> str:
    """A value for a table cell: numbers to `digits` significant digits, JSON for the rest."""
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:.{digits}g}" if math.isfinite(value) else str(value)
    if isinstance(value, str):
        return value
    return json.dumps(value, separators=(",", ":"))


def fmt_seconds(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    seconds = max(0.0, float(seconds))
    if seconds < 60:
        return f"{seconds:.0f}s" if seconds >= 10 else f"{seconds:.1f}s"
    minutes, secs = divmod(round(seconds), 60)
    return f"{minutes}m{secs:02d}s" if minutes < 60 else f"{minutes // 60}h{minutes % 60:02d}m"


def losses_text(record: dict[str, Any] | None) -> str:
    if not record:
        return ""
    return "  ".join(f"{name} {fmt(record[name])}" for name in LOSSES if record.get(name) is not None)


def print_summary(job: dict[str, Any], console: Console) -> None:
    """The end of a job in a few lines: status, epochs, time, best/final/test metrics or the error."""
    result = job.get("result") or {}
    progress = job.get("progress") or {}
    epochs = result.get("epochs_run", progress.get("epoch"))
    head = f"{job['id']} {job['status']}: {epochs} epoch{'s' if epochs != 1 else ''}"
    if result.get("seconds") is not None:
        head += f" in {fmt_seconds(result['seconds'])}"
    if result.get("stopped_early"):
        head += f", stopped early ({result.get('stop_reason') or 'early stopping'})"
    console.print(head)
    for part in ("best", "final", "test"):
        metrics = result.get(part)
        if metrics:
            epoch = f"(epoch {metrics['epoch']}) " if metrics.get("epoch") is not None else ""
            shown = {k: v for k, v in metrics.items() if k.endswith(SUMMARY_SUFFIXES)}
            # the running training-mode figures are not comparable with val_*: the summary leaves them out
            cells = "  ".join(f"{k} {fmt(v)}" for k, v in shown.items() if not k.startswith("train_running_"))
            console.print(f"  {part:<5} {epoch}{cells}")
    if job.get("error"):
        console.print(f"  error: {job['error']}")


def exit_for(job: dict[str, Any]) -> None:
    """Exit 1 when the job did not succeed."""
    if job["status"] in {"failed", "cancelled"}:
        raise typer.Exit(EXIT_FAILED)


class JobProgress:
    """Shows a job's progress: a rich bar on a terminal, one line per epoch elsewhere (logs, CI)."""

    def __init__(self, client: Client, job: dict[str, Any], console: Console) -> None:
        self.client, self.job_id, self.console = client, job["id"], console
        self.epochs = int(job["progress"]["epochs"])
        self.epoch = 0
        self.record: dict[str, Any] | None = None
        self.status = ""
        self.bar: Progress | None = None
        self.task: TaskID | None = None
        if console.is_terminal:
            self.bar = Progress(
                TextColumn("[bold]{task.description}"),
                BarColumn(),
                TextColumn("epoch {task.completed:.0f}/{task.total:.0f}"),
                TextColumn("{task.fields[losses]}"),
                TextColumn("ETA {task.fields[eta]}"),
                console=console,
            )

    def __enter__(self) -> JobProgress:
        if self.bar is not None:
            self.bar.start()
            self.task = self.bar.add_task(self.job_id, total=self.epochs, losses="", eta="-")
        return self

    def __exit__(self, *_exc: object) -> None:
        if self.bar is not None:
            self.bar.stop()

    def update(self, job: dict[str, Any]) -> None:
        progress = job["progress"]
        epoch, epochs = int(progress["epoch"]), int(progress["epochs"])
        if epoch > self.epoch:
            try:
                records = self.client.metrics(self.job_id, since_epoch=self.epoch, fields=LOSSES)
            except TrainctlError:
                records = []
            self.record = records[-1] if records else self.record
        eta = fmt_seconds(progress.get("eta_seconds"))
        if self.bar is not None and self.task is not None:
            self.bar.update(
                self.task,
                completed=epoch,
                total=epochs,
                description=f"{self.job_id} {job['status']}",
                losses=losses_text(self.record),
                eta=eta,
            )
        else:
            if job["status"] != self.status and job["status"] not in FINISHED:
                self.console.print(f"{self.job_id} {job['status']}")
            if epoch > self.epoch:
                self.console.print(f"epoch {epoch}/{epochs}  {losses_text(self.record)}  ETA {eta}")
        self.epoch, self.status = max(epoch, self.epoch), job["status"]


def register_client_commands(app: typer.Typer) -> None:
    """Add the client commands to the `trainctl` app."""
    for command in (submit, status, watch, metrics, compare, sweep, download, plot, cancel):
        app.command(rich_help_panel="Client")(command)


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
                        if k not in {"epoch", *LOSSES} and isinstance(v, int | float) and "accuracy" in k
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


def epochs_to_target(group: dict[str, Any], by_id: dict[str, dict[str, Any]]) -> str:
    """Mean epochs to reach the target over the group's jobs that reached it, and how many did."""
    ids = group.get("job_ids") or []
    reached = [by_id[i]["epochs_to_target"] for i in ids if (by_id.get(i) or {}).get("epochs_to_target")]
    if not reached:
        return f"never (0/{len(ids)})"
    return f"{fmt(sum(reached) / len(reached), 3)} ({len(reached)}/{len(ids)} reached)"


def compare_table(result: dict[str, Any], metric: str) -> tuple[RichTable, list[str]]:
    """The comparison as a rich table (one row per seed group when any group has n > 1) and notes."""
    jobs = result.get("jobs", [])
    by_id = {job["id"]: job for job in jobs}
    groups = result.get("groups") or []
    grouped = any(group.get("n", 1) > 1 for group in groups)
    differing: dict[str, None] = {}
    for job in jobs:
        differing.update(dict.fromkeys(job.get("differs") or {}))
    notes: list[str] = []
    if grouped:
        differing.pop("training.seed", None)
    columns = list(differing)
    table = RichTable(title=f"compare by {metric}", title_justify="left")
    table.add_column("")
    if grouped:
        best_key = result.get("best_group")
        table.add_column("jobs")
        for column in columns:
            table.add_column(column)
        others = {n for g in groups for n in g.get("metrics", {}) if n not in {metric, "epochs_to_target"}}
        metric_names = [metric, *sorted(others, key=lambda n: (not n.startswith("test"), n))]
        metric_names = [n for n in metric_names if any(n in g.get("metrics", {}) for g in groups)][:4]
        for name in metric_names:
            table.add_column(f"{name} (mean ± std)", justify="right")
        target = result.get("target")
        if target:
            table.add_column(f"epochs to {target}", justify="right")
        for index, group in enumerate(groups):
            first = by_id.get((group.get("job_ids") or [None])[0]) or {}
            key = group.get("key") if isinstance(group.get("key"), dict) else first.get("differs") or {}
            # best_group is the group's index (or its key)
            is_best = best_key is not None and best_key in (index, group.get("key"))
            cells = ["★" if is_best else "", f"{group.get('n', len(group.get('job_ids', [])))}"]
            cells += [fmt(key.get(column)) for column in columns]
            for name in metric_names:
                stats = group.get("metrics", {}).get(name)
                if not stats or stats.get("mean") is None:
                    cells.append("-")
                else:
                    cells.append(f"{fmt(stats['mean'])} ± {fmt(stats.get('std') or 0.0, 2)}")
            if target:
                cells.append(epochs_to_target(group, by_id))
            table.add_row(*cells, style="bold green" if is_best else None)
        if result.get("best_within_noise"):
            notes.append(
                "note: the best group's lead is within noise (its mean ± std overlaps another group's); "
                "run more seeds before trusting it."
            )
    else:
        table.add_column("job")
        table.add_column("status")
        for column in columns:
            table.add_column(column)
        for header in (
            f"best {metric}",
            "best epoch",
            f"final {metric}",
            "test",
            "epochs to target",
            "seconds",
        ):
            table.add_column(header, justify="right")
        values = [(_value(job.get("best"), metric), job["id"]) for job in jobs]
        present = [(v, i) for v, i in values if isinstance(v, int | float)]
        mode = result.get("mode") or ("max" if "accuracy" in metric else "min")
        best_id = (max(present) if mode == "max" else min(present))[1] if present else None
        for job in jobs:
            test = job.get("test") or {}
            test_text = "  ".join(f"{k} {fmt(v)}" for k, v in test.items() if isinstance(v, int | float))
            is_best = job["id"] == best_id
            cells = ["★" if is_best else "", job["id"], job.get("status", "")]
            cells += [fmt((job.get("differs") or {}).get(column)) for column in columns]
            cells += [
                fmt(_value(job.get("best"), metric)),
                fmt(job.get("best_epoch")),
                fmt(_value(job.get("final"), metric)),
                test_text or "-",
                fmt(job.get("epochs_to_target")),
                fmt_seconds(job.get("seconds")),
            ]
            table.add_row(*cells, style="bold green" if is_best else None)
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
    csv: Annotated[bool, typer.Option("--csv", help="Print the flat CSV table instead.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the comparison as JSON.")] = False,
    url: UrlOption = None,
    key: KeyOption = None,
) -> None:
    """Compare jobs side by side: the differing spec fields as columns, mean ± std per seed group."""
    if bool(job_ids) == bool(sweep_id):
        raise die("give job ids or --sweep ID (one of them)", EXIT_USAGE)
    if mode is not None and mode not in {"min", "max"}:
        raise die("--mode must be min or max", EXIT_USAGE)
    params = {"metric": metric, "mode": mode, "target": target}
    with connect(url, key) as client:
        if csv:
            typer.echo(client.compare_csv(jobs=job_ids or None, sweep=sweep_id, **params), nl=False)
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
    table, notes = compare_table(result, metric)
    console.print(table)
    for note in notes:
        console.print(note)


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
    """Save a PNG: learning curves (mean ± std per seed group), or one job's gradients or saturation."""
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
