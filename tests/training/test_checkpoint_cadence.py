"""checkpoint_seconds: best and last are written together at most that often, and when the run ends."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest

from tests.training.conftest import Recorder, make_spec, merge
from tests.training.test_checkpoint import (
    STRESS,
    assert_same_tensors,
    checkpoint_tensors,
    metrics,
    without_timing,
)
from tests.training.test_group import seeds
from training import checkpoint
from training.callbacks import Callback
from training.checkpoint import read_checkpoint
from training.group import fit_group
from training.loop import fit
from training.records import EpochRecord

STOPPING = merge(STRESS, {"generalization": {"early_stopping": {"patience": 3}}})


class EpochClock(Callback):
    """The checkpoint writer's clock, reading one second per epoch (set before the writer sees an epoch)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.now = 0.0
        monkeypatch.setattr(checkpoint, "time", SimpleNamespace(monotonic=lambda: self.now))

    def on_epoch_end(self, record: EpochRecord) -> None:
        self.now = float(record.epoch)


def written(recorder: Recorder, name: str) -> list[int]:
    """The epochs of the checkpoints `name` as they were announced."""
    return [info.epoch for info in recorder.checkpoints if info.name == name]


def test_last_is_written_at_most_every_so_many_seconds_and_at_the_end(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    recorder = Recorder()
    fit(
        make_spec(training={"epochs": 5}), tmp_path, [EpochClock(monkeypatch), recorder], checkpoint_seconds=2
    )
    assert written(recorder, "last") == [2, 4, 5]
    assert read_checkpoint(tmp_path / "checkpoints" / "last.safetensors")[1]["epoch"] == 5


def test_a_deferred_best_holds_its_own_epoch_as_one_written_at_once(tmp_path: Path) -> None:
    spec = make_spec(**STOPPING)
    at_once, deferred = Recorder(), Recorder()
    eager = fit(spec, tmp_path / "eager", [at_once])
    lazy = fit(spec, tmp_path / "lazy", [deferred], checkpoint_seconds=3600)
    assert lazy.stopped_early and lazy.best_epoch == eager.best_epoch < lazy.epochs_run  # type: ignore[operator]
    assert [(info.name, info.epoch) for info in deferred.checkpoints] == [
        ("best", lazy.best_epoch),
        ("last", lazy.epochs_run),
    ]
    assert len(at_once.checkpoints) > len(deferred.checkpoints)
    for name in ("best", "last"):
        assert_same_tensors(
            checkpoint_tensors(tmp_path / "lazy", name), checkpoint_tensors(tmp_path / "eager", name)
        )
    assert (
        read_checkpoint(tmp_path / "lazy" / "checkpoints" / "best.safetensors")[1]["epoch"] == lazy.best_epoch
    )


class Killed(Exception):
    """Stands for a worker killed mid-run: nothing after it is written."""


class KillAfter(Callback):
    """Raises Killed at the end of epoch `epoch`, before that epoch's checkpoints."""

    def __init__(self, epoch: int) -> None:
        self.epoch = epoch

    def on_epoch_end(self, record: EpochRecord) -> None:
        if record.epoch == self.epoch:
            raise Killed


def test_a_run_killed_between_writes_resumes_from_the_last_one_exactly(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    spec = make_spec(**STRESS)
    fit(spec, tmp_path / "straight")
    first, second = Recorder(), Recorder()
    with pytest.raises(Killed):
        fit(spec, tmp_path / "resumed", [EpochClock(monkeypatch), first, KillAfter(5)], checkpoint_seconds=2)
    assert written(first, "last") == [2, 4]
    again = [EpochClock(monkeypatch), second]
    resumed = fit(spec, tmp_path / "resumed", again, resume=True, checkpoint_seconds=2)
    assert resumed.status == "succeeded"
    assert [r["epoch"] for r in second.records] == list(range(5, 11))  # epoch 5 again: it was not written
    assert without_timing(metrics(tmp_path / "resumed")) == without_timing(metrics(tmp_path / "straight"))
    assert_same_tensors(checkpoint_tensors(tmp_path / "resumed"), checkpoint_tensors(tmp_path / "straight"))


def test_a_cancelled_run_writes_its_last_finished_epoch_and_resumes_after_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    spec = make_spec(**STRESS)
    straight = Recorder()
    fit(spec, tmp_path / "straight", [straight])
    first, second = Recorder(stop_after=5), Recorder()
    cancelled = fit(spec, tmp_path / "resumed", [first], checkpoint_seconds=3600)
    assert cancelled.status == "cancelled" and written(first, "last") == [5]
    resumed = fit(spec, tmp_path / "resumed", [second], resume=True, checkpoint_seconds=3600)
    assert [r["epoch"] for r in second.records] == list(range(6, 11))
    assert without_timing(first.records + second.records) == without_timing(straight.records)
    assert_same_tensors(checkpoint_tensors(tmp_path / "resumed"), checkpoint_tensors(tmp_path / "straight"))
    assert (
        resumed.best_epoch
        == read_checkpoint(tmp_path / "resumed" / "checkpoints" / "best.safetensors")[1]["epoch"]
    )


def test_a_group_defers_its_replicas_checkpoints_as_the_jobs_alone_do(tmp_path: Path) -> None:
    specs = seeds({"optimizer": {"name": "sgd", "learning_rate": 2.0}}, count=2, epochs=6)
    eager = [tmp_path / f"eager-{i}" for i in range(2)]
    lazy = [tmp_path / f"lazy-{i}" for i in range(2)]
    fit_group(specs, eager)
    recorders = [Recorder() for _ in specs]
    results = fit_group(specs, lazy, [[r] for r in recorders], checkpoint_seconds=3600)
    assert any(result.best_epoch != 6 for result in results)
    for result, recorder, a, b in zip(results, recorders, eager, lazy, strict=True):
        assert [(info.name, info.epoch) for info in recorder.checkpoints] == [
            ("best", result.best_epoch),
            ("last", 6),
        ]
        for name in ("best", "last"):
            tensors, meta = read_checkpoint(b / "checkpoints" / f"{name}.safetensors")
            assert meta["epoch"] == (result.best_epoch if name == "best" else 6)
            assert_same_tensors(tensors, checkpoint_tensors(a, name))


def test_the_command_line_takes_the_cadence(tmp_path: Path) -> None:
    from training.__main__ import main

    spec = tmp_path / "spec.json"
    spec.write_text(make_spec().model_dump_json())
    with pytest.raises(SystemExit) as refused:
        main(["run", str(spec), "--out", str(tmp_path / "out"), "--checkpoint-seconds", "-1"])
    assert refused.value.code == 2 and not (tmp_path / "out").exists()
    assert main(["run", str(spec), "--out", str(tmp_path / "out"), "--checkpoint-seconds", "60"]) == 0
    assert read_checkpoint(tmp_path / "out" / "checkpoints" / "last.safetensors")[1]["epoch"] == 3
