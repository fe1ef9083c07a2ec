"""What the client commands share: options, exit codes, the connection, reading specs, printing."""

from __future__ import annotations

import json
import math
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.progress import BarColumn, Progress, TaskID, TextColumn

from trainctl.client import FINISHED, Client, ServerUnreachable, TrainctlError, WaitTimeout

# Exit codes (the README's table): 0 ok; 1 a job failed or was cancelled, or what was named does not
# exist; 2 usage or validation error; 3 the server is unreachable, answered 5xx, or a wait timed out.
EXIT_FAILED, EXIT_USAGE, EXIT_SERVICE = 1, 2, 3
LOSSES = ("train_loss", "val_loss")
SUMMARY_SUFFIXES = ("loss", "accuracy", "rmse")

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
    """Tables and results; piped output gets room for wide tables (unless COLUMNS says otherwise)."""
    console = Console(highlight=False, soft_wrap=True)
    if not console.is_terminal and not os.environ.get("COLUMNS"):
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
        if error.status == 404:  # one line: what was not found
            raise die(error.detail or message, EXIT_FAILED) from error
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


def losses_text(record: dict[str, Any] | None, *, short: bool = False) -> str:
    """`train_loss 0.31  val_loss 0.35` (short, for a progress bar: `train 0.31 val 0.35`)."""
    if not record:
        return ""
    present = [name for name in LOSSES if record.get(name) is not None]
    if short:
        return " ".join(f"{name.removesuffix('_loss')} {fmt(record[name], 3)}" for name in present)
    return "  ".join(f"{name} {fmt(record[name])}" for name in present)


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
            # Fits 80 columns: the id was printed above, so the line is status, bar, epoch, losses, ETA.
            self.bar = Progress(
                TextColumn("[bold]{task.description:<9}"),
                BarColumn(bar_width=16),
                TextColumn("{task.completed:.0f}/{task.total:.0f}"),
                TextColumn("{task.fields[losses]}"),
                TextColumn("ETA {task.fields[eta]}"),
                console=console,
            )

    def __enter__(self) -> JobProgress:
        if self.bar is not None:
            self.bar.start()
            self.task = self.bar.add_task("queued", total=self.epochs, losses="", eta="-")
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
                description=job["status"],
                losses=losses_text(self.record, short=True),
                eta=eta,
            )
        else:
            if job["status"] != self.status and job["status"] not in FINISHED:
                self.console.print(f"{self.job_id} {job['status']}")
            if epoch > self.epoch:
                self.console.print(f"epoch {epoch}/{epochs}  {losses_text(self.record)}  ETA {eta}")
        self.epoch, self.status = max(epoch, self.epoch), job["status"]
