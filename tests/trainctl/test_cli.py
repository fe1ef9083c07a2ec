"""The `trainctl` command line: keys, migrations, worker planning, and usage errors (exit 2)."""

from __future__ import annotations

import json
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import select
from typer.testing import CliRunner

from core.config import Settings, get_settings
from core.db import make_engine, make_session_factory
from core.models import ApiKey
from tests.benchmark_files import FileServer, file_server, published
from trainctl.cli import app
from trainctl.server import ensure_first_key
from trainctl.workerproc import MALLOC_ENV, plan_worker, worker_command, worker_environment
from training.download import REMOTE_FILES

__all__ = ["file_server", "published"]  # fixtures used by name below


@pytest.fixture(autouse=True)
def isolated_settings(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[None]:
    """Commands read settings from the environment: give each test its own data dir and no .env."""
    # Set through monkeypatch so that what --data-dir exports is undone after the test.
    monkeypatch.setenv("TRAINCTL_DATA_DIR", str(tmp_path / "var"))
    for name in ("DATABASE_URL", "BROKER_URL", "ARTIFACTS_URL", "DATASET_CACHE", "DATASET_MIRROR"):
        name = f"TRAINCTL_{name}"
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path)
    get_settings.cache_clear()
    yield
    get_settings.cache_clear()


def keys_of(data_dir: Path) -> list[ApiKey]:
    engine = make_engine(f"sqlite:///{data_dir / 'trainctl.db'}")
    try:
        with make_session_factory(engine)() as session:
            return list(session.scalars(select(ApiKey)).all())
    finally:
        engine.dispose()


def test_keys_create_then_revoke(tmp_path: Path) -> None:
    runner = CliRunner()
    data_dir = tmp_path / "var"
    created = runner.invoke(app, ["keys", "create", "--owner", "bob", "--data-dir", str(data_dir)])
    assert created.exit_code == 0, created.output
    (key,) = keys_of(data_dir)
    assert key.owner == "bob" and key.revoked_at is None
    assert created.stdout.strip().splitlines()[-1] not in key.key_hash  # only a hash is stored
    revoked = runner.invoke(app, ["keys", "revoke", key.id, "--data-dir", str(data_dir)])
    assert revoked.exit_code == 0, revoked.output
    assert keys_of(data_dir)[0].revoked_at is not None
    unknown = runner.invoke(app, ["keys", "revoke", "nope", "--data-dir", str(data_dir)])
    assert unknown.exit_code == 1 and "nope" in unknown.output


@pytest.mark.parametrize(
    "argv",
    [
        ["serve", "--port", "0"],
        ["serve", "--bogus"],
        ["keys", "create"],
        ["keys", "create", "--owner", " "],
        ["worker", "--device", "gpu0"],
        ["worker", "--concurrency", "0"],
        ["nonsense"],
    ],
)
def test_bad_usage_exits_2_with_a_message(argv: list[str]) -> None:
    outcome = CliRunner().invoke(app, argv)
    assert outcome.exit_code == 2, outcome.output
    assert outcome.output.strip()


def test_migrate(tmp_path: Path) -> None:
    outcome = CliRunner().invoke(app, ["migrate", "--data-dir", str(tmp_path / "var")])
    assert outcome.exit_code == 0, outcome.output
    assert (tmp_path / "var" / "trainctl.db").exists()


def test_first_key_is_written_once_with_mode_0600(tmp_path: Path) -> None:
    from core.migrate import upgrade_database

    settings = Settings(_env_file=None, data_dir=tmp_path / "var")  # type: ignore[call-arg]
    upgrade_database(settings.resolved_database_url)
    secret = ensure_first_key(settings)
    key_file = settings.data_dir / "api-key"
    assert secret and key_file.read_text().strip() == secret
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    assert ensure_first_key(settings) is None, "a second start must not create another key"


def test_worker_plan_defaults_and_environment(tmp_path: Path) -> None:
    cpu = plan_worker(device="cpu", queues=None, concurrency=None, threads=None, cpu_count=2)
    assert (cpu.queues, cpu.concurrency, cpu.threads) == (["cpu"], 2, 1)
    gpu = plan_worker(device="cuda:1", queues=None, concurrency=None, threads=None, cpu_count=16)
    assert (gpu.queues, gpu.concurrency, gpu.device) == (["gpu"], 1, "cuda:1")
    env = worker_environment(gpu, base={})
    assert env["CUDA_VISIBLE_DEVICES"] == "1"
    assert all(env[name] == value for name, value in MALLOC_ENV.items())
    command = worker_command(cpu, data_dir=tmp_path)
    assert command[command.index("--pool") + 1] == "prefork"
    assert command[command.index("--queues") + 1] == "cpu"
    one_job = plan_worker(device="cpu", queues="a,b", concurrency=1, threads=2)
    solo = worker_command(one_job, data_dir=tmp_path)
    assert solo[solo.index("--pool") + 1] == "solo" and solo[solo.index("--queues") + 1] == "a,b"


def test_datasets_fetch_fills_the_cache_from_the_mirror(
    published: FileServer, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    published.files.update(
        {f"/mirror{path.removeprefix('/canonical')}": data for path, data in published.files.items()}
    )
    monkeypatch.setenv("TRAINCTL_DATASET_MIRROR", f"{published.url}/mirror")
    fetched = CliRunner().invoke(app, ["datasets", "fetch", "fashion_mnist"])
    assert fetched.exit_code == 0, fetched.output
    folder = tmp_path / "var" / "datasets" / "fashion_mnist"
    assert "SHA-256 verified" in fetched.stdout and str(folder) in fetched.stdout
    assert sorted(p.name for p in folder.glob("*.gz")) == sorted(
        f.name for f in REMOTE_FILES["fashion_mnist"]
    )
    assert set(published.requests) == {
        f"/mirror/fashion_mnist/{f.name}" for f in REMOTE_FILES["fashion_mnist"]
    }
    again = CliRunner().invoke(app, ["datasets", "fetch", "fashion_mnist"])
    assert again.exit_code == 0 and sum(published.requests.values()) == 4  # already cached


def test_datasets_fetch_failures_and_usage(published: FileServer, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TRAINCTL_DATASET_MIRROR", f"{published.url}/nowhere")
    failed = CliRunner().invoke(app, ["datasets", "fetch", "mnist"])
    assert failed.exit_code == 1 and "TRAINCTL_DATASET_MIRROR" in failed.output and "404" in failed.output
    assert CliRunner().invoke(app, ["datasets", "fetch", "imagenet"]).exit_code == 2


def test_datasets_fetch_mnist1d_generates_it_once(tmp_path: Path) -> None:
    fetched = CliRunner().invoke(app, ["datasets", "fetch", "mnist1d"])
    assert fetched.exit_code == 0, fetched.output
    assert "4,000 training and 1,000 test" in fetched.stdout
    assert [p.name for p in (tmp_path / "var" / "datasets" / "mnist1d").iterdir()] == [
        "mnist1d-5000-seed42.npz"
    ]


def test_version_and_keys_list_never_show_a_secret(tmp_path: Path) -> None:
    runner = CliRunner()
    version = runner.invoke(app, ["--version"])
    assert version.exit_code == 0 and version.stdout.startswith("trainctl ")
    data_dir = str(tmp_path / "var")
    secrets = [
        runner.invoke(app, ["keys", "create", "--owner", owner, "--data-dir", data_dir]).stdout.strip()
        for owner in ("ann", "bob")
    ]
    first = keys_of(tmp_path / "var")[0]
    runner.invoke(app, ["keys", "revoke", first.id, "--data-dir", data_dir])
    listed = runner.invoke(app, ["keys", "list", "--data-dir", data_dir])
    assert listed.exit_code == 0, listed.output
    lines = listed.stdout.splitlines()
    assert lines[0].split() == ["ID", "OWNER", "CREATED", "(UTC)", "REVOKED"] and len(lines) == 3
    assert all(len(line) <= 80 for line in lines)
    assert not any(secret in listed.stdout for secret in secrets)
    assert sum(line.rstrip().endswith("-") for line in lines[1:]) == 1  # one key not revoked
    as_json = runner.invoke(app, ["keys", "list", "--owner", "bob", "--json", "--data-dir", data_dir])
    (bob,) = json.loads(as_json.stdout)
    assert set(bob) == {"id", "owner", "created_at", "revoked_at"} and bob["revoked_at"] is None
