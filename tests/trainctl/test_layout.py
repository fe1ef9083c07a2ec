"""What the CLI prints fits 80 columns: the compare table of unrelated jobs and the --wait progress bar."""

from __future__ import annotations

import io
from typing import Any

from rich.console import Console

from trainctl.cli_common import JobProgress
from trainctl.compare_layout import cell, short_headers
from trainctl.sweep_cli import compare_table


def unrelated_comparison(target: str | None = None) -> dict[str, Any]:
    """Two jobs on different data with different networks and optimizers, as GET /v1/compare answers."""
    differs = [
        {
            "dataset": {"name": "iris"},
            "network.hidden_layers": [64, 64],
            "optimizer.name": "adam",
            "optimizer.learning_rate": 0.001,
            "training.epochs": 30,
        },
        {
            "dataset": {"id": "ds_0123456789abcdef"},
            "network.hidden_layers": [16],
            "optimizer.name": "sgd",
            "optimizer.learning_rate": 0.1,
            "training.epochs": 100,
        },
    ]
    jobs = [
        {
            "id": f"job_{index:016x}",
            "name": name,
            "status": "succeeded",
            "differs": differ,
            "best": {"epoch": 12, "val_loss": 0.2345678},
            "final": {"epoch": 30, "val_loss": 0.25},
            "best_epoch": 12,
            "test": {"test_loss": 0.21, "test_accuracy": 0.9333},
            "epochs_to_target": 7 if target else None,
            "seconds": 12.5,
        }
        for index, (name, differ) in enumerate(zip(["iris-adam", None], differs, strict=True))
    ]
    return {"jobs": jobs, "common": {"activation": "relu"}, "groups": [], "target": target, "mode": "min"}


def render(renderable: Any) -> str:
    out = io.StringIO()
    Console(file=out, width=80, color_system=None).print(renderable)
    return out.getvalue()


def test_unrelated_jobs_compare_at_80_columns() -> None:
    table, _notes = compare_table(unrelated_comparison(), "val_loss")
    screen = render(table)
    assert all(len(line) <= 80 for line in screen.splitlines())
    assert "iris-adam" in screen and "job_0000000000000001" in screen.replace("\n", "")  # name, else id
    assert "{" not in screen and "…" not in screen  # no printed dicts, nothing cut
    assert "name=iris" in screen and "64x64" in screen and "0.9333" in screen and "0.2346" in screen
    assert "lr" in screen and "epochs to" not in screen  # short headers; no target column unasked
    with_target, _ = compare_table(unrelated_comparison("val_loss<0.3"), "val_loss")
    assert "epochs to" in render(with_target).replace("\n", " ")


def test_headers_are_the_shortest_unique_tails() -> None:
    paths = ["optimizer.learning_rate", "network.hidden_layers", "optimizer.name", "dataset.name", "seed"]
    assert short_headers(paths) == {
        "optimizer.learning_rate": "lr",
        "network.hidden_layers": "hidden",
        "optimizer.name": "optimizer.name",
        "dataset.name": "dataset.name",
        "seed": "seed",
    }
    assert cell({"name": "iris"}) == "name=iris" and cell([32, 32]) == "32x32" and cell(0.5) == "0.5"


class Metrics:
    """A client stand-in for the bar: the last epoch's losses (the bar itself is what is tested)."""

    def metrics(self, _job_id: str, **_kwargs: Any) -> list[dict[str, Any]]:
        return [{"epoch": 7, "train_loss": 0.123456, "val_loss": 0.234567}]


def test_wait_progress_keeps_bar_and_eta_at_80_columns() -> None:
    out = io.StringIO()
    console = Console(file=out, width=80, force_terminal=True, color_system=None)
    job = {"id": "job_0123456789abcdef", "status": "running", "progress": {"epoch": 7, "epochs": 100}}
    with JobProgress(Metrics(), job, console) as progress:  # type: ignore[arg-type]
        progress.update({**job, "progress": {"epoch": 7, "epochs": 100, "eta_seconds": 754.0}})
        assert progress.bar is not None
        line = "".join(segment.text for segment in console.render(progress.bar.get_renderable()))
    assert len(line.rstrip("\n")) <= 80
    assert "━" in line and "7/100" in line and "ETA 12m34s" in line and "val 0.235" in line
