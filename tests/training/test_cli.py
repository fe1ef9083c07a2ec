"""`python -m training run/validate`, and every shipped example spec run through it."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from training.__main__ import main
from training.spec import Activation, InitName, JobSpec, NormalInit

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = sorted((ROOT / "examples" / "specs").glob("*.json"))


def write_spec(folder: Path, raw: dict[str, Any], name: str = "spec.json") -> Path:
    """Write a spec file and return its path."""
    path = folder / name
    path.write_text(json.dumps(raw))
    return path


TINY_RAW: dict[str, Any] = {
    "dataset": {"name": "iris"},
    "network": {"hidden_layers": [8]},
    "activation": "tansig",
    "training": {"epochs": 3, "batch_size": 16, "device": "cpu"},
}


def test_validate_prints_the_normalized_spec_and_warnings(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    raw = {**TINY_RAW, "initialization": "zeros"}
    assert main(["validate", str(write_spec(tmp_path, raw))]) == 0
    out = capsys.readouterr().out
    spec_text, _, warnings = out.partition("\nwarning")
    printed = json.loads(spec_text)
    assert printed["activation"] == "tanh"  # alias normalized
    assert printed["optimizer"] == {
        "name": "adam",
        "learning_rate": 0.001,
        "betas": [0.9, 0.999],
        "eps": 1e-08,
        "schedule": None,
    }
    assert "[zeros_initialization]" in warnings


def test_validate_runs_as_a_module(tmp_path: Path) -> None:
    completed = subprocess.run(
        [sys.executable, "-m", "training", "validate", str(write_spec(tmp_path, TINY_RAW))],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
    )
    assert completed.returncode == 0, completed.stderr
    assert json.loads(completed.stdout)["activation"] == "tanh"


@pytest.mark.parametrize("command", ["run", "validate"])
def test_a_bad_spec_exits_2_names_the_problem_and_writes_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], command: str
) -> None:
    raw = {**TINY_RAW, "activation": "softmax", "optimizer": {"name": "adam", "learnig_rate": 0.1}}
    out = tmp_path / "out"
    argv = [command, str(write_spec(tmp_path, raw))] + (["--out", str(out)] if command == "run" else [])
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "activation: unknown activation 'softmax'" in err
    assert "optimizer:" in err and "did you mean 'learning_rate'?" in err
    assert not out.exists()


def test_an_unknown_key_does_not_hide_the_other_problems(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    raw = {**TINY_RAW, "colour": "red", "optimizer": {"learning_rate": -1}, "training": {"epochs": 0}}
    assert main(["validate", str(write_spec(tmp_path, raw))]) == 2
    err = capsys.readouterr().err
    assert "spec: unknown key 'colour'" in err
    assert "optimizer.learning_rate: Input should be greater than 0" in err
    assert "training.epochs: Input should be greater than or equal to 1" in err


def test_unreadable_spec_files_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "broken.json").write_text("{not json")
    assert main(["run", str(tmp_path / "broken.json"), "--out", str(tmp_path / "out")]) == 2
    assert main(["validate", str(tmp_path / "missing.json")]) == 2
    err = capsys.readouterr().err
    assert "not valid JSON" in err and "does not exist" in err
    assert not (tmp_path / "out").exists()


def epoch_lines(text: str) -> list[str]:
    """The per-epoch lines of `run` output."""
    return [line for line in text.splitlines() if line.startswith("epoch=")]


def test_run_prints_one_line_per_epoch_and_writes_outputs(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "out"
    assert main(["run", str(write_spec(tmp_path, TINY_RAW)), "--out", str(out)]) == 0
    text = capsys.readouterr().out
    lines = epoch_lines(text)
    assert [line.split()[0] for line in lines] == ["epoch=1", "epoch=2", "epoch=3"]
    assert all("train_loss=" in line and "val_accuracy=" in line for line in lines)
    result = json.loads((out / "result.json").read_text())
    assert result["status"] == "succeeded" and result["epochs_run"] == 3
    assert len((out / "metrics.jsonl").read_text().splitlines()) == 3
    assert (out / "checkpoints" / "last.safetensors").exists() and (out / "spec.json").exists()
    assert '"status": "succeeded"' in text


def test_run_epochs_overrides_the_spec(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert (
        main(["run", str(write_spec(tmp_path, TINY_RAW)), "--out", str(tmp_path / "out"), "--epochs", "2"])
        == 0
    )
    assert len(epoch_lines(capsys.readouterr().out)) == 2
    assert json.loads((tmp_path / "out" / "result.json").read_text())["epochs_run"] == 2


def test_run_resume_continues_from_the_last_checkpoint(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    spec = str(write_spec(tmp_path, TINY_RAW))
    assert main(["run", spec, "--out", str(tmp_path / "resumed"), "--epochs", "2"]) == 0
    capsys.readouterr()
    assert main(["run", spec, "--out", str(tmp_path / "resumed"), "--epochs", "4", "--resume"]) == 0
    assert [line.split()[0] for line in epoch_lines(capsys.readouterr().out)] == ["epoch=3", "epoch=4"]
    assert main(["run", spec, "--out", str(tmp_path / "straight"), "--epochs", "4"]) == 0

    def losses(folder: str) -> list[tuple[int, float, float]]:
        lines = (tmp_path / folder / "metrics.jsonl").read_text().splitlines()
        return [(r["epoch"], r["train_loss"], r["val_loss"]) for r in map(json.loads, lines)]

    assert losses("resumed") == losses("straight")
    assert len(losses("resumed")) == 4


def test_resume_onto_another_specs_checkpoint_exits_2_with_a_message(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = str(tmp_path / "out")
    assert main(["run", str(write_spec(tmp_path, TINY_RAW)), "--out", out, "--epochs", "1"]) == 0
    other = write_spec(tmp_path, {**TINY_RAW, "network": {"hidden_layers": [5]}}, "other.json")
    assert main(["run", str(other), "--out", out, "--resume"]) == 2
    assert (
        "was written for a different spec; start a fresh run instead of --resume" in capsys.readouterr().err
    )


def test_a_failed_run_exits_1_with_the_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    raw = {
        "dataset": {"name": "diabetes"},
        "network": {"hidden_layers": [8]},
        "normalization": {"inputs": "none"},
        "optimizer": {"name": "sgd", "learning_rate": 10},
        "training": {"epochs": 3, "device": "cpu"},
    }
    assert main(["run", str(write_spec(tmp_path, raw)), "--out", str(tmp_path / "out")]) == 1
    assert "error: the training loss became" in capsys.readouterr().err
    assert json.loads((tmp_path / "out" / "result.json").read_text())["status"] == "failed"


# -------------------------------------------------------------------------------------- examples


def example_specs() -> list[JobSpec]:
    """Every example spec, validated."""
    return [JobSpec.model_validate_json(path.read_text()) for path in EXAMPLES]


def test_there_are_example_specs_and_docs_list_each_one() -> None:
    assert len(EXAMPLES) >= 30
    docs = (ROOT / "docs" / "examples.md").read_text()
    for path in EXAMPLES:
        assert f"`{path.name}`" in docs, f"{path.name} is missing from docs/examples.md"


def test_examples_cover_every_technique() -> None:
    specs = example_specs()
    activations = {spec.activation for spec in specs}
    assert {Activation.sigmoid, Activation.tanh, Activation.relu, Activation.leaky_relu} <= activations
    inits = {spec.initialization for spec in specs if isinstance(spec.initialization, str)}
    assert set(InitName) - {InitName.default, InitName.xavier_normal, InitName.he_uniform} <= inits
    assert any(isinstance(spec.initialization, NormalInit) for spec in specs)
    assert {spec.normalization.inputs for spec in specs} == {"none", "minmax", "zscore"}
    assert {"batch", "layer"} <= {spec.normalization.layers for spec in specs}
    assert {spec.optimizer.name for spec in specs} >= {
        "sgd",
        "momentum",
        "nesterov",
        "adam",
        "adamw",
        "rmsprop",
        "adagrad",
    }
    assert {type(spec.optimizer.schedule).__name__ for spec in specs} >= {
        "StepSchedule",
        "CosineSchedule",
        "PlateauSchedule",
    }
    assert {type(spec.clipping).__name__ for spec in specs} >= {"NormClipping", "ValueClipping"}
    assert any(spec.generalization.early_stopping for spec in specs)
    assert any(spec.generalization.l2 > 0 for spec in specs)
    assert any(spec.generalization.dropout > 0 for spec in specs)


# Examples that demonstrate a failure: the run must end failed, for the documented reason.
EXPECTED_FAILURES = {"rnn-exploding.json": "the training loss became"}


@pytest.mark.parametrize("path", EXAMPLES, ids=[p.stem for p in EXAMPLES])
def test_example_spec_runs_under_the_command_line(
    path: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "out"
    code = main(["run", str(path), "--out", str(out), "--epochs", "2"])
    captured = capsys.readouterr()
    result = json.loads((out / "result.json").read_text())
    if path.name in EXPECTED_FAILURES:
        assert (code, result["status"]) == (1, "failed")
        assert EXPECTED_FAILURES[path.name] in result["error"]
        return
    assert code == 0, captured.err
    assert result["status"] == "succeeded" and result["epochs_run"] == 2
    assert len(epoch_lines(captured.out)) == 2
