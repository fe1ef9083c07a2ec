"""The `trainctl` command line: run the service and administer it (client commands come later)."""

from __future__ import annotations

import json
import os
from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer

from core.config import Settings, get_settings
from trainctl import __version__
from trainctl.client_cli import register_client_commands

app = typer.Typer(
    name="trainctl",
    help="Training as a service: run the API and workers, manage API keys and the database.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
keys_app = typer.Typer(help="Create, list and revoke API keys.", no_args_is_help=True)
app.add_typer(keys_app, name="keys")
datasets_app = typer.Typer(help="Benchmark datasets in the cache that workers read.", no_args_is_help=True)
app.add_typer(datasets_app, name="datasets")
register_client_commands(app)

DataDirOption = Annotated[
    Path | None,
    typer.Option(
        "--data-dir",
        help="Where the embedded default keeps its database, broker and artifacts (env TRAINCTL_DATA_DIR).",
        file_okay=False,
    ),
]
HostOption = Annotated[str, typer.Option(help="Address to bind; 127.0.0.1 keeps the API on this machine.")]
PortOption = Annotated[int, typer.Option(min=1, max=65535, help="Port of the HTTP API.")]


def _print_version(value: bool) -> None:
    if value:
        typer.echo(f"trainctl {__version__}")
        raise typer.Exit()


@app.callback()
def _options(
    version: Annotated[
        bool,
        typer.Option("--version", callback=_print_version, is_eager=True, help="Print the version and exit."),
    ] = False,
) -> None:
    """Training as a service: run the API and workers, manage API keys and the database."""


def load_settings(data_dir: Path | None = None) -> Settings:
    """Settings from the environment, with --data-dir applied (exported, so child processes agree)."""
    if data_dir is not None:
        os.environ["TRAINCTL_DATA_DIR"] = str(data_dir.expanduser().resolve())
        get_settings.cache_clear()
    settings = get_settings()
    keep_private(settings.data_dir)
    return settings


def keep_private(data_dir: Path) -> None:
    """Files this process (and its children) create are 0600, folders 0700; the data dir itself 0700.

    The data dir holds the database, uploads, checkpoints and the first key: nobody else's to read.
    """
    os.umask(0o077)
    try:
        if data_dir.is_dir():
            data_dir.chmod(0o700)
    except OSError as error:  # a data dir owned by someone else: say so, keep going
        typer.secho(f"trainctl: cannot make {data_dir} private: {error}", err=True, fg=typer.colors.YELLOW)


def fail(message: str, code: int = 1) -> typer.Exit:
    """Print an error a person can act on and return the Exit to raise."""
    typer.secho(f"trainctl: {message}", err=True, fg=typer.colors.RED)
    return typer.Exit(code)


@app.command()
def serve(
    host: HostOption = "127.0.0.1",
    port: PortOption = 8000,
    data_dir: DataDirOption = Path("var"),
    threads: Annotated[int | None, typer.Option(min=1, help="Torch threads per job.")] = None,
    concurrency: Annotated[int | None, typer.Option(min=1, help="Jobs at once in the worker.")] = None,
) -> None:
    """Run everything on this machine: migrations, the API and one worker (SQLite, no servers needed)."""
    from core.process import AlreadyRunning
    from trainctl.server import serve as run_server

    settings = load_settings(data_dir)
    worker_args = [f"--threads={threads}"] if threads else []
    worker_args += [f"--concurrency={concurrency}"] if concurrency else []
    try:
        run_server(settings, host=host, port=port, worker_args=worker_args)
    except AlreadyRunning as error:
        raise fail(str(error)) from None


@app.command()
def api(host: HostOption = "127.0.0.1", port: PortOption = 8000, data_dir: DataDirOption = None) -> None:
    """Run only the HTTP API (migrates the database first; several API processes may start at once)."""
    from api.main import create_app
    from core.migrate import upgrade_database
    from trainctl.http import run_api

    settings = load_settings(data_dir)
    upgrade_database(settings.resolved_database_url)
    run_api(create_app(settings), host=host, port=port, read_timeout=settings.request_read_timeout)


@app.command()
def worker(
    device: Annotated[
        str | None, typer.Option(help="cpu, or cuda:N: the GPU this worker owns (one worker per GPU).")
    ] = None,
    queues: Annotated[
        str | None, typer.Option(help="Comma-separated queues (default: gpu with CUDA, else cpu).")
    ] = None,
    concurrency: Annotated[
        int | None, typer.Option(min=1, help="Jobs at once (default: 1 on a GPU, 2 on CPU).")
    ] = None,
    threads: Annotated[
        int | None, typer.Option(min=1, help="Torch threads per job (default: cores / jobs).")
    ] = None,
    beat: Annotated[bool, typer.Option(help="Also schedule the periodic reaper (run exactly one).")] = False,
    data_dir: DataDirOption = None,
) -> None:
    """Run a Celery worker that trains jobs (with malloc tuned and torch warmed up once)."""
    from trainctl.workerproc import exec_worker, plan_worker

    settings = load_settings(data_dir)
    try:
        plan = plan_worker(
            device=device,
            queues=queues,
            concurrency=concurrency or settings.worker_concurrency,
            threads=threads or settings.worker_threads,
            beat=beat,
        )
    except ValueError as error:
        raise typer.BadParameter(str(error)) from error
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    from core.migrate import upgrade_database

    upgrade_database(settings.resolved_database_url)  # workers may start before the API has migrated
    exec_worker(plan, data_dir=settings.data_dir.resolve())


@app.command()
def migrate(data_dir: DataDirOption = None) -> None:
    """Bring the database to the newest schema."""
    from core.migrate import upgrade_database

    upgrade_database(load_settings(data_dir).resolved_database_url)
    typer.echo("database is up to date")


@keys_app.command("create")
def keys_create(
    owner: Annotated[str, typer.Option(help="Who the key belongs to; jobs and datasets are theirs.")],
    data_dir: DataDirOption = None,
) -> None:
    """Create an API key and print it (it is shown only once)."""
    from api.auth.service import create_key
    from core.db import make_engine, make_session_factory
    from core.migrate import upgrade_database

    if not owner.strip():
        raise typer.BadParameter("must not be empty", param_hint="--owner")
    url = load_settings(data_dir).resolved_database_url
    upgrade_database(url)
    engine = make_engine(url)
    try:
        with make_session_factory(engine)() as session:
            row, secret = create_key(session, owner=owner.strip())
    finally:
        engine.dispose()
    typer.secho(f"key {row.id} for {row.owner} (shown once; store it now):", err=True)
    typer.echo(secret)


@keys_app.command("list")
def keys_list(
    owner: Annotated[str | None, typer.Option(help="Only this owner's keys.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")] = False,
    data_dir: DataDirOption = None,
) -> None:
    """List API keys: id, owner, created, revoked (never the key itself: only its hash is stored)."""
    from api.auth.service import list_keys
    from core.db import make_engine, make_session_factory

    engine = make_engine(load_settings(data_dir).resolved_database_url)
    try:
        with make_session_factory(engine)() as session:
            rows = [
                {
                    "id": key.id,
                    "owner": key.owner,
                    "created_at": key.created_at.isoformat(timespec="seconds"),
                    "revoked_at": key.revoked_at.isoformat(timespec="seconds") if key.revoked_at else None,
                }
                for key in list_keys(session, owner=owner)
            ]
    finally:
        engine.dispose()
    if as_json:
        typer.echo(json.dumps(rows, indent=2))
        return
    typer.echo(f"{'ID':<20} {'OWNER':<18} {'CREATED (UTC)':<16} REVOKED")
    for row in rows:
        created = str(row["created_at"])[:16].replace("T", " ")
        revoked = str(row["revoked_at"] or "-")[:16].replace("T", " ")
        typer.echo(f"{row['id']:<20} {str(row['owner'])[:18]:<18} {created:<16} {revoked}")


@keys_app.command("revoke")
def keys_revoke(
    key_id: Annotated[str, typer.Argument(help="The key's id (not the secret).")],
    data_dir: DataDirOption = None,
) -> None:
    """Revoke an API key at once."""
    from api.auth.service import revoke_key
    from api.errors import NotFound
    from core.db import make_engine, make_session_factory

    engine = make_engine(load_settings(data_dir).resolved_database_url)
    try:
        with make_session_factory(engine)() as session:
            revoke_key(session, key_id=key_id)
    except NotFound as error:
        raise fail(str(error)) from error
    finally:
        engine.dispose()
    typer.echo(f"key {key_id} revoked")


class CachedDataset(StrEnum):
    """Datasets kept in the dataset cache: generated once (mnist1d) or downloaded once."""

    mnist1d = "mnist1d"
    mnist = "mnist"
    fashion_mnist = "fashion_mnist"
    cifar10 = "cifar10"


@datasets_app.command("fetch")
def datasets_fetch(
    name: Annotated[CachedDataset, typer.Argument(help="The dataset to put in the cache.")],
    data_dir: DataDirOption = None,
) -> None:
    """Fill the dataset cache (TRAINCTL_DATASET_CACHE), SHA-256 verified; mirror: TRAINCTL_DATASET_MIRROR."""
    from rich.progress import BarColumn, DownloadColumn, Progress, TaskID, TextColumn, TransferSpeedColumn

    from training.benchmarks import load_mnist1d
    from training.download import DatasetCache, DownloadError, RemoteFile, fetch_dataset
    from training.spec import MNIST1DDatasetSpec

    settings = load_settings(data_dir)
    cache = DatasetCache(settings.resolved_dataset_cache, settings.dataset_mirror)
    if name == CachedDataset.mnist1d:
        train, test = load_mnist1d(MNIST1DDatasetSpec(name="mnist1d"), cache)
        typer.echo(f"mnist1d: {len(train.X):,} training and {len(test.X):,} test examples in {cache.folder}")
        return
    columns = (TextColumn("{task.description}"), BarColumn(), DownloadColumn(), TransferSpeedColumn())
    with Progress(*columns, transient=False) as bar:
        tasks: dict[str, TaskID] = {}

        def show(remote: RemoteFile, received: int) -> None:
            if remote.name not in tasks:
                tasks[remote.name] = bar.add_task(remote.name, total=remote.size)
            bar.update(tasks[remote.name], completed=received)

        try:
            files = fetch_dataset(name.value, cache, show)
        except DownloadError as error:
            raise fail(str(error)) from error
    for path in files.values():
        typer.echo(f"{path} (SHA-256 verified)")


def main() -> None:
    """Entry point of the `trainctl` console script."""
    app()
