"""Every client command of `trainctl` against a real `trainctl serve`, with its output and exit codes."""

from __future__ import annotations

import csv
import io
import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from click.testing import Result
from typer.testing import CliRunner

from tests.e2e.harness import DIVERGING_SPEC, IRIS_SPEC, REPO_ROOT, SLOW_SPEC
from tests.trainctl.conftest import LiveServer, free_port
from trainctl.cli import app
from trainctl.client import Client
from trainctl.sweep_cli import parse_grid_values

pytestmark = pytest.mark.slow

ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")
PNG = b"\x89PNG\r\n\x1a\n"


def trainctl(
    server: LiveServer,
    *args: str,
    url: str | None = None,
    key: str | None = None,
    env_columns: str | None = None,
) -> Result:
    """Run a command in-process with the server's URL and key in the environment (and COLUMNS)."""
    env = {
        "COLUMNS": env_columns,
        "TRAINCTL_URL": url or server.url,
        "TRAINCTL_API_KEY": key or server.key,
        "TRAINCTL_DATA_DIR": None,
        "TRAINCTL_RETRY_SECONDS": "0",  # an unreachable server fails at once (retries: test_retry.py)
    }
    return CliRunner().invoke(app, list(args), env=env)


def write_spec(tmp_path: Path, spec: dict[str, Any], name: str = "spec.json") -> str:
    path = tmp_path / name
    path.write_text(json.dumps(spec))
    return str(path)


def client_for(server: LiveServer) -> Client:
    return Client(server.url, server.key)


def test_submit_prints_the_id_and_status_shows_the_job(live_server: LiveServer, tmp_path: Path) -> None:
    submitted = trainctl(
        live_server, "submit", write_spec(tmp_path, IRIS_SPEC), "--name", "cli", "--tag", "t1"
    )
    assert submitted.exit_code == 0, submitted.output
    job_id = submitted.stdout.strip()
    assert re.fullmatch(r"job_[0-9a-f]+", job_id)
    with client_for(live_server) as client:
        job = client.wait(job_id, timeout=60)
    assert job["name"] == "cli" and job["tags"] == ["t1"]
    shown = trainctl(live_server, "status", job_id)
    assert shown.exit_code == 0, shown.output
    assert f"{job_id} (cli): succeeded, epoch 5/5" in shown.stdout
    assert "best  (epoch" in shown.stdout and "test  test_loss" in shown.stdout
    as_json = trainctl(live_server, "status", job_id, "--json")
    assert json.loads(as_json.stdout)["id"] == job_id


def test_submit_wait_shows_progress_lines_then_the_result(live_server: LiveServer, tmp_path: Path) -> None:
    outcome = trainctl(live_server, "submit", write_spec(tmp_path, IRIS_SPEC), "--wait")
    assert outcome.exit_code == 0, outcome.output
    job_id = outcome.stdout.strip().splitlines()[0]
    progress = outcome.stderr
    assert "epoch 5/5  train_loss " in progress and " val_loss " in progress and "ETA" in progress
    assert f"{job_id} succeeded: 5 epochs" in progress
    assert progress.index("epoch 5/5") < progress.index("succeeded: 5 epochs")


def test_submit_wait_draws_a_progress_bar_on_a_terminal(live_server: LiveServer, tmp_path: Path) -> None:
    spec = write_spec(tmp_path, {**IRIS_SPEC, "training": {**IRIS_SPEC["training"], "epochs": 40}})
    done = subprocess.run(
        [sys.executable, "-m", "trainctl", "submit", spec, "--wait"],
        env={**live_server.env(), "TTY_COMPATIBLE": "1", "COLUMNS": "80"},
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    screen = ANSI.sub("", done.stderr)
    assert "━" in screen  # the bar
    assert re.search(r"━ 40/40 train [0-9.]+ val [0-9.]+ ETA", screen), screen[-2000:]
    assert "succeeded: 40 epochs" in screen


def test_sweep_wait_draws_a_bar_of_finished_jobs_on_a_terminal(
    live_server: LiveServer, tmp_path: Path
) -> None:
    spec = write_spec(tmp_path, {**IRIS_SPEC, "training": {**IRIS_SPEC["training"], "epochs": 3}})
    done = subprocess.run(
        [sys.executable, "-m", "trainctl", "sweep", spec, "--grid", "activation=tanh,relu", "--wait"],
        env={**live_server.env(), "TTY_COMPATIBLE": "1", "COLUMNS": "150"},
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    screen = ANSI.sub("", done.stderr)
    assert "━" in screen and "2/2 jobs" in screen and "2 succeeded" in screen
    assert re.fullmatch(r"sw_[0-9a-f]+", done.stdout.strip())


def test_submit_wait_exits_1_when_the_job_fails(live_server: LiveServer, tmp_path: Path) -> None:
    outcome = trainctl(live_server, "submit", write_spec(tmp_path, DIVERGING_SPEC), "--wait")
    assert outcome.exit_code == 1, outcome.output
    job_id = outcome.stdout.strip()
    assert f"{job_id} failed" in outcome.stderr and "error:" in outcome.stderr
    status = trainctl(live_server, "status", job_id)
    assert status.exit_code == 1 and "failed" in status.stdout


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (None, "No such file"),
        ("{not json", "not valid JSON"),
        ("[1, 2]", "expected a JSON object"),
    ],
)
def test_a_bad_spec_file_exits_2(
    live_server: LiveServer, tmp_path: Path, content: str | None, message: str
) -> None:
    path = tmp_path / "spec.json"
    if content is not None:
        path.write_text(content)
    outcome = trainctl(live_server, "submit", str(path))
    assert outcome.exit_code == 2, outcome.output
    assert message in outcome.stderr


def test_an_invalid_spec_exits_2_with_field_lines(live_server: LiveServer, tmp_path: Path) -> None:
    bad = {**IRIS_SPEC, "optimizer": {"name": "adam", "learning_rate": -1}}
    outcome = trainctl(live_server, "submit", write_spec(tmp_path, bad))
    assert outcome.exit_code == 2, outcome.output
    assert "Invalid request (422)" in outcome.stderr
    assert "  spec.optimizer.learning_rate: " in outcome.stderr
    assert outcome.stdout == ""


def test_unknown_job_bad_key_and_unreachable_server(live_server: LiveServer) -> None:
    missing = trainctl(live_server, "status", "job_nope")
    assert missing.exit_code == 1 and missing.stderr == "trainctl: no job with id 'job_nope'\n"
    refused = trainctl(live_server, "status", "job_nope", key="wrong")
    assert refused.exit_code == 2 and "(401)" in refused.stderr
    down = trainctl(live_server, "status", "job_nope", url=f"http://127.0.0.1:{free_port()}")
    assert down.exit_code == 3
    assert "Cannot reach the trainctl server" in down.stderr and "Traceback" not in down.output
    with_flags = CliRunner().invoke(
        app,
        ["status", "job_nope", "--url", live_server.url, "--key", live_server.key],
        env={"TRAINCTL_URL": None},
    )
    assert with_flags.exit_code == 1 and "job_nope" in with_flags.stderr


def test_watch_follows_the_events_to_the_end(live_server: LiveServer, tmp_path: Path) -> None:
    spec = {**IRIS_SPEC, "training": {**IRIS_SPEC["training"], "epochs": 6}}
    job_id = trainctl(live_server, "submit", write_spec(tmp_path, spec)).stdout.strip()
    outcome = trainctl(live_server, "watch", job_id)
    assert outcome.exit_code == 0, outcome.output
    lines = outcome.stdout.splitlines()
    epochs = [line.split()[1] for line in lines if line.startswith("epoch ")]
    assert epochs == [f"{n}/6" for n in range(1, 7)]
    assert "val_loss" in next(line for line in lines if line.startswith("epoch 6/6"))
    assert f"{job_id} succeeded: 6 epochs" in outcome.stdout


def test_watch_exits_1_for_a_failed_or_cancelled_job(live_server: LiveServer, tmp_path: Path) -> None:
    failed = trainctl(live_server, "submit", write_spec(tmp_path, DIVERGING_SPEC)).stdout.strip()
    outcome = trainctl(live_server, "watch", failed)
    assert outcome.exit_code == 1, outcome.output
    assert f"{failed} failed" in outcome.stdout
    slow = trainctl(live_server, "submit", write_spec(tmp_path, SLOW_SPEC, "slow.json")).stdout.strip()
    cancelled = trainctl(live_server, "cancel", slow)
    assert cancelled.exit_code == 0 and slow in cancelled.stdout
    watched = trainctl(live_server, "watch", slow)
    assert watched.exit_code == 1 and "cancelled" in watched.stdout


def test_metrics_table_csv_and_fields(live_server: LiveServer, tmp_path: Path) -> None:
    job_id = trainctl(live_server, "submit", write_spec(tmp_path, IRIS_SPEC), "--wait").stdout.split()[0]
    table = trainctl(live_server, "metrics", job_id)
    assert table.exit_code == 0, table.output
    assert "train_loss" in table.stdout and "val_accuracy" in table.stdout and "layers" not in table.stdout
    assert len([line for line in table.stdout.splitlines() if re.match(r"│\s+[1-5] │", line)]) == 5
    some = trainctl(live_server, "metrics", job_id, "--fields", "val_loss")
    assert "val_loss" in some.stdout and "train_loss" not in some.stdout
    as_csv = trainctl(live_server, "metrics", job_id, "--csv")
    rows = list(csv.DictReader(io.StringIO(as_csv.stdout)))
    assert [row["epoch"] for row in rows] == ["1", "2", "3", "4", "5"]
    assert any(column.startswith("layers.") for column in rows[0])
    narrow = list(
        csv.DictReader(
            io.StringIO(trainctl(live_server, "metrics", job_id, "--csv", "--fields", "val_loss").stdout)
        )
    )
    assert set(narrow[0]) == {"epoch", "val_loss"}


def test_download_a_checkpoint(live_server: LiveServer, tmp_path: Path) -> None:
    job_id = trainctl(live_server, "submit", write_spec(tmp_path, IRIS_SPEC), "--wait").stdout.split()[0]
    target = tmp_path / "model.safetensors"
    outcome = trainctl(live_server, "download", job_id, "-o", str(target))
    assert outcome.exit_code == 0, outcome.output
    assert str(target) in outcome.stdout and target.stat().st_size > 100
    last = trainctl(live_server, "download", job_id, "--checkpoint", "last", "-o", str(tmp_path / "last.st"))
    assert last.exit_code == 0 and (tmp_path / "last.st").exists()
    missing = trainctl(
        live_server, "download", job_id, "--checkpoint", "epoch-9999", "-o", str(tmp_path / "x")
    )
    assert missing.exit_code == 1 and not (tmp_path / "x").exists()  # not found


def test_grid_values_parse_as_json_when_they_can() -> None:
    assert parse_grid_values("sigmoid,relu") == ["sigmoid", "relu"]
    assert parse_grid_values("0.1, 0.01,1e-3") == [0.1, 0.01, 0.001]
    assert parse_grid_values("[16],[16,16]") == [[16], [16, 16]]
    assert parse_grid_values("[[8],[8,8]]") == [[8], [8, 8]]
    assert parse_grid_values('none,{"max_norm":1.0}') == ["none", {"max_norm": 1.0}]
    assert parse_grid_values("true,null") == [True, None]
    with pytest.raises(ValueError):
        parse_grid_values("a,,b")


@pytest.mark.parametrize(
    "grid",
    [["activation"], ["=relu"], ["activation=relu,"], ["activation=relu", "activation=tanh"], []],
)
def test_bad_grid_syntax_exits_2(live_server: LiveServer, tmp_path: Path, grid: list[str]) -> None:
    args = [arg for option in grid for arg in ("--grid", option)]
    outcome = trainctl(live_server, "sweep", write_spec(tmp_path, IRIS_SPEC), *args)
    assert outcome.exit_code == 2, outcome.output
    assert "--grid" in outcome.stderr


def test_usage_errors_exit_2(live_server: LiveServer, tmp_path: Path) -> None:
    for argv in (
        ["compare"],
        ["compare", "job_a", "--sweep", "sw_b"],
        ["compare", "job_a", "--mode", "sideways"],
        ["plot", "-o", str(tmp_path / "p.png")],
        ["plot", "job_a", "job_b", "--kind", "gradients"],
        ["plot", "job_a", "--kind", "pie"],
        ["submit"],
        ["sweep", write_spec(tmp_path, IRIS_SPEC), "--grid", "activation=relu", "--seeds", "0"],
    ):
        outcome = trainctl(live_server, *argv)
        assert outcome.exit_code == 2, (argv, outcome.output)


def test_sweep_wait_compare_and_plot(live_server: LiveServer, tmp_path: Path) -> None:
    spec = write_spec(
        tmp_path, {**IRIS_SPEC, "training": {**IRIS_SPEC["training"], "epochs": 4}}, "base.json"
    )
    grid = ["--grid", "activation=sigmoid,relu", "--grid", "normalization.layers=none,batch"]
    swept = trainctl(live_server, "sweep", spec, *grid, "--seeds", "2", "--name", "cli-sweep", "--wait")
    assert swept.exit_code == 0, swept.output
    sweep_id = swept.stdout.strip()
    assert "8 jobs (2 × 2 grid × 2 seeds)" in swept.stderr
    assert "8/8 jobs finished" in swept.stderr and "8 succeeded" in swept.stderr

    grouped = trainctl(live_server, "compare", "--sweep", sweep_id)
    assert grouped.exit_code == 0, grouped.output
    out = grouped.stdout
    assert "activation" in out and "normalization.layers" in out and "training.seed" not in out
    rows = [line for line in out.splitlines() if re.match(r"^\s*(★|\d)\s+(sigmoid|relu)\s", line)]
    assert len(rows) == 4 and all(re.search(r"\s2\s+\S+ ± \S+", row) for row in rows), out
    assert sum("★" in row for row in rows) == 1 and "p (Holm)" in out and "mean ± CI" in out
    assert sum(verdict in row for row in rows for verdict in ("better", "not distinguishable", "worse")) == 3
    assert all(len(line) <= 100 for line in out.split("effects on")[0].splitlines()[1:]), "fits 100 columns"
    assert "effects on val_loss" in out and "(relu − sigmoid) × (batch − none)" in out, out
    assert out.startswith("common: ") and "dataset.name=iris" in out
    targeted = trainctl(live_server, "compare", "--sweep", sweep_id, "--target", "val_loss<5").stdout
    assert "epochs to" in targeted and targeted.count("1 (2/2)") == 4, targeted
    assert "epochs_to_target (mean" not in targeted  # one column for it, not two

    with client_for(live_server) as client:
        jobs = [job["id"] for job in client.get_sweep(sweep_id)["jobs"]]
    two = trainctl(live_server, "compare", jobs[0], jobs[-1], "--target", "val_loss<5")
    assert two.exit_code == 0, two.output
    assert two.stdout.count("★") == 2  # the title's key, and the best job's column
    assert "best val_loss" in two.stdout and "epochs to val_loss<5" in two.stdout
    assert "activation" in two.stdout and "seed" in two.stdout

    as_csv = trainctl(live_server, "compare", "--sweep", sweep_id, "--csv")
    table = list(csv.DictReader(io.StringIO(as_csv.stdout)))
    assert len(table) == 8 and {"id", "activation", "normalization.layers"} <= set(table[0])
    groups_csv = trainctl(live_server, "compare", "--sweep", sweep_id, "--csv", "--table", "groups")
    groups = list(csv.DictReader(io.StringIO(groups_csv.stdout)))
    assert len(groups) == 4 and {"val_loss.ci_low", "vs_best.p_holm", "vs_best.hedges_g"} <= set(groups[0])
    assert trainctl(live_server, "compare", "--sweep", sweep_id, "--csv", "--table", "x").exit_code == 2

    more = trainctl(live_server, "add-seeds", sweep_id, "3", "--wait")
    assert more.exit_code == 0, more.output
    assert len(more.stdout.split()) == 4 and "4 jobs added" in more.stderr
    regrouped = trainctl(live_server, "compare", "--sweep", sweep_id).stdout
    rows = [line for line in regrouped.splitlines() if re.match(r"^\s*(★|\d)\s+(sigmoid|relu)\s", line)]
    assert len(rows) == 4 and all(re.search(r"\s3\s+\S+ ± ", row) for row in rows), regrouped

    image = tmp_path / "sweep.png"
    plotted = trainctl(live_server, "plot", "--sweep", sweep_id, "--metric", "val_loss", "-o", str(image))
    assert plotted.exit_code == 0, plotted.output
    assert image.read_bytes().startswith(PNG)
    pair = tmp_path / "pair.png"
    assert trainctl(live_server, "plot", jobs[0], jobs[1], "-o", str(pair)).exit_code == 0
    assert pair.read_bytes().startswith(PNG)
    gradients = tmp_path / "gradients.png"
    assert trainctl(live_server, "plot", jobs[0], "--kind", "gradients", "-o", str(gradients)).exit_code == 0
    assert gradients.read_bytes().startswith(PNG)
    unknown = trainctl(live_server, "compare", "--sweep", "sw_nope")
    assert unknown.exit_code == 1 and "sw_nope" in unknown.stderr


def test_sweep_exits_1_when_a_job_fails(live_server: LiveServer, tmp_path: Path) -> None:
    spec = write_spec(tmp_path, DIVERGING_SPEC, "diverging.json")
    swept = trainctl(live_server, "sweep", spec, "--grid", "optimizer.learning_rate=10,0.001", "--wait")
    assert swept.exit_code == 1, swept.output
    assert "1 failed" in swept.stderr and "1 succeeded" in swept.stderr


def test_an_invalid_sweep_exits_2_with_field_lines(live_server: LiveServer, tmp_path: Path) -> None:
    spec = write_spec(tmp_path, IRIS_SPEC)
    outcome = trainctl(live_server, "sweep", spec, "--grid", "activation=sigmoid,banana")
    assert outcome.exit_code == 2, outcome.output
    assert "(422)" in outcome.stderr and "activation" in outcome.stderr
