"""Checkpoints, exact resume, load_model/predict, and how failures and cancellations end."""

from __future__ import annotations

import json
import os
import pickle
import struct
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from tests.training.conftest import Recorder, make_spec, merge
from training.callbacks import Callback
from training.checkpoint import load_model, prefixed, read_checkpoint
from training.data import prepare
from training.loop import fit
from training.spec import InputScaling, JobSpec, Task
from training.tabular import make_table

TIMING = ("seconds", "samples_per_second")

# dropout + batch norm + a schedule + sampled diagnostics: every kind of state a resume must restore
STRESS: dict[str, Any] = {
    "dataset": {"name": "moons", "samples": 120, "noise": 0.45},
    "network": {"hidden_layers": [32, 32]},
    "normalization": {"layers": "batch"},
    "optimizer": {
        "name": "adam",
        "learning_rate": 0.003,
        "schedule": {"type": "step", "step_size": 3, "gamma": 0.5},
    },
    "generalization": {"dropout": 0.2},
    "training": {"epochs": 10, "batch_size": 16, "diagnostics_every": 2},
}


def without_timing(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Records minus the wall-clock fields."""
    return [{k: v for k, v in record.items() if k not in TIMING} for record in records]


def metrics(out: Path) -> list[dict[str, Any]]:
    """The records of out/metrics.jsonl."""
    return [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]


def checkpoint_tensors(out: Path, name: str = "last") -> dict[str, torch.Tensor]:
    """Every tensor of a checkpoint (weights, optimizer state, RNG states, scaler)."""
    return read_checkpoint(out / "checkpoints" / f"{name}.safetensors")[0]


def assert_same_tensors(first: dict[str, torch.Tensor], second: dict[str, torch.Tensor]) -> None:
    """Same keys and bit-identical values."""
    assert first.keys() == second.keys()
    for key in first:
        assert torch.equal(first[key], second[key]), key


def interrupted_then_resumed(spec: JobSpec, out: Path, after: int) -> tuple[list[Any], list[dict[str, Any]]]:
    """Cancel a run after `after` epochs, resume it; returns both results and all epoch records."""
    first = Recorder(stop_after=after)
    cancelled = fit(spec, out, callbacks=[first])
    second = Recorder()
    resumed = fit(spec, out, callbacks=[second], resume=True)
    return [cancelled, resumed], first.records + second.records


def test_resume_after_interruption_reproduces_the_uninterrupted_run_exactly(tmp_path: Path) -> None:
    spec = make_spec(**STRESS)
    straight = Recorder()
    full = fit(spec, tmp_path / "straight", callbacks=[straight])
    (cancelled, resumed), records = interrupted_then_resumed(spec, tmp_path / "resumed", after=5)

    assert (cancelled.status, cancelled.epochs_run) == ("cancelled", 5)
    assert (resumed.status, resumed.epochs_run) == ("succeeded", 10) == (full.status, full.epochs_run)
    assert [r["epoch"] for r in records] == list(range(1, 11))
    assert without_timing(records) == without_timing(straight.records)
    assert without_timing(metrics(tmp_path / "resumed")) == without_timing(metrics(tmp_path / "straight"))
    assert_same_tensors(checkpoint_tensors(tmp_path / "resumed"), checkpoint_tensors(tmp_path / "straight"))
    assert resumed.test == full.test and resumed.best_epoch == full.best_epoch


def test_resumed_run_stops_early_at_the_same_epoch(tmp_path: Path) -> None:
    spec = make_spec(**merge(STRESS, {"generalization": {"early_stopping": {"patience": 3}}}))
    straight = Recorder()
    full = fit(spec, tmp_path / "straight", callbacks=[straight])
    assert full.stopped_early and 5 < full.epochs_run < 10 and full.best_epoch < 5  # type: ignore[operator]
    (cancelled, resumed), records = interrupted_then_resumed(spec, tmp_path / "resumed", after=5)
    assert cancelled.status == "cancelled" and not cancelled.stopped_early
    assert resumed.stopped_early
    assert (resumed.epochs_run, resumed.best_epoch) == (full.epochs_run, full.best_epoch)
    assert without_timing(records) == without_timing(straight.records)
    assert resumed.test == full.test  # measured on the restored best weights in both runs
    assert_same_tensors(
        checkpoint_tensors(tmp_path / "resumed", "best"), checkpoint_tensors(tmp_path / "straight", "best")
    )


def test_resume_without_a_checkpoint_starts_fresh(tmp_path: Path) -> None:
    spec = make_spec()
    result = fit(spec, tmp_path, resume=True)
    assert result.status == "succeeded" and result.epochs_run == 3


def test_resume_refuses_a_checkpoint_of_another_spec(tmp_path: Path) -> None:
    fit(make_spec(), tmp_path)
    with pytest.raises(ValueError, match="different spec"):
        fit(make_spec(optimizer={"name": "sgd"}), tmp_path, resume=True)


def test_resume_can_extend_the_epochs(tmp_path: Path) -> None:
    fit(make_spec(training={"epochs": 2}), tmp_path / "extended")
    extended = fit(make_spec(training={"epochs": 4}), tmp_path / "extended", resume=True)
    straight = fit(make_spec(training={"epochs": 4}), tmp_path / "straight")
    assert extended.epochs_run == 4
    assert without_timing(metrics(tmp_path / "extended")) == without_timing(metrics(tmp_path / "straight"))
    assert extended.final is not None and straight.final is not None
    assert without_timing([extended.final.model_dump()]) == without_timing([straight.final.model_dump()])


def test_a_fresh_run_into_a_used_folder_starts_a_new_metrics_file(tmp_path: Path) -> None:
    fit(make_spec(training={"epochs": 3}), tmp_path)
    fit(make_spec(training={"epochs": 2}), tmp_path)
    assert [record["epoch"] for record in metrics(tmp_path)] == [1, 2]


def test_checkpoints_written_every_k_epochs_and_reported_to_callbacks(tmp_path: Path) -> None:
    recorder = Recorder()
    fit(make_spec(training={"epochs": 4, "checkpoint_every": 2}), tmp_path, callbacks=[recorder])
    names = sorted(p.name for p in (tmp_path / "checkpoints").iterdir())
    assert names == [
        "best.safetensors",
        "epoch-00002.safetensors",
        "epoch-00004.safetensors",
        "last.safetensors",
    ]
    assert {(info.name, info.epoch) for info in recorder.checkpoints} >= {("epoch-00002", 2), ("last", 4)}
    assert all(info.path.exists() for info in recorder.checkpoints)


# ----------------------------------------------------------------------------------- load_model


def raw_splits(spec: JobSpec) -> Any:
    """The spec's splits without input scaling (what a user would send to predict)."""
    return prepare(spec.dataset, InputScaling.none, spec.training.seed, torch.device("cpu"))


def test_load_model_predicts_classes_and_probabilities_on_raw_inputs(tmp_path: Path) -> None:
    spec = make_spec(training={"epochs": 10}, optimizer={"name": "adam", "learning_rate": 0.02})
    result = fit(spec, tmp_path)
    model = load_model(tmp_path / "checkpoints" / "last.safetensors")
    raw = raw_splits(spec)
    prediction = model.predict(raw.X_test.numpy())
    probabilities = torch.tensor(prediction["probabilities"])
    torch.testing.assert_close(probabilities.sum(dim=1), torch.ones(len(raw.X_test)))
    labels = ["setosa", "versicolor", "virginica"]  # iris keeps its class names
    assert set(prediction["classes"]) <= set(labels)
    predicted = torch.tensor([labels.index(c) for c in prediction["classes"]])
    accuracy = (predicted == raw.y_test).float().mean().item()
    assert accuracy == pytest.approx(result.test["test_accuracy"])  # type: ignore[index]
    # the stored z-score statistics are those of the raw training split
    mean, std = raw.X_train.double().mean(0), raw.X_train.double().std(0, unbiased=False)
    with torch.no_grad():
        direct = torch.softmax(model.module(((raw.X_test.double() - mean) / std).float()), dim=1)
    torch.testing.assert_close(probabilities, direct, rtol=1e-5, atol=1e-6)


def test_load_model_predicts_regression_values_with_minmax_scaling(tmp_path: Path) -> None:
    spec = make_spec(dataset={"name": "diabetes"}, normalization={"inputs": "minmax"})
    fit(spec, tmp_path)
    model = load_model(tmp_path / "checkpoints" / "last.safetensors")
    raw = raw_splits(spec)
    values = torch.tensor(model.predict(raw.X_test.numpy())["values"])
    assert values.shape == (len(raw.X_test), 1)
    low, high = raw.X_train.min(0).values, raw.X_train.max(0).values
    # the network predicts z-scored targets; predict answers in the original units
    mean, std = raw.y_train.double().mean(0), raw.y_train.double().std(0, unbiased=False)
    with torch.no_grad():
        direct = (model.module(2 * (raw.X_test - low) / (high - low) - 1).double() * std + mean).float()
    torch.testing.assert_close(values, direct, rtol=1e-5, atol=1e-3)


def test_predict_returns_the_original_class_labels(tmp_path: Path) -> None:
    rows = ["a,b,animal"] + [f"{i % 7},{(i * 3) % 5},{'cat' if i % 2 else 'dog'}" for i in range(40)]
    (tmp_path / "pets.csv").write_text("\n".join(rows) + "\n")
    spec = JobSpec.model_validate(
        {
            "dataset": {"path": str(tmp_path / "pets.csv"), "target": "animal"},
            "network": {"hidden_layers": [4]},
        }
    )
    fit(spec, tmp_path / "run")
    prediction = load_model(tmp_path / "run" / "checkpoints" / "last.safetensors").predict(
        [[1.0, 2.0], [3.0, 4.0]]
    )
    assert set(prediction["classes"]) <= {"cat", "dog"} and len(prediction["probabilities"][0]) == 2


def test_load_model_with_batch_norm_predicts_a_batch_of_one(tmp_path: Path) -> None:
    spec = make_spec(
        normalization={"layers": "batch"}, network={"hidden_layers": [8, 8]}, training={"epochs": 4}
    )
    fit(spec, tmp_path)
    model = load_model(tmp_path / "checkpoints" / "last.safetensors")
    assert not model.module.training
    X = raw_splits(spec).X_test.numpy()
    together = model.predict(X)["probabilities"]
    alone = [model.predict(X[i : i + 1])["probabilities"][0] for i in range(len(X))]
    np.testing.assert_allclose(alone, together, rtol=1e-5, atol=1e-6)


def test_predict_rejects_inputs_of_the_wrong_width(tmp_path: Path) -> None:
    fit(make_spec(training={"epochs": 1}), tmp_path)
    with pytest.raises(ValueError, match="shape"):
        load_model(tmp_path / "checkpoints" / "last.safetensors").predict([[1.0, 2.0]])


# -------------------------------------------------------------------------------- file format


def test_checkpoint_is_safetensors_not_pickle(tmp_path: Path) -> None:
    fit(make_spec(training={"epochs": 1}), tmp_path)
    data = (tmp_path / "checkpoints" / "last.safetensors").read_bytes()
    # safetensors: a little-endian u64 header length, a JSON header, raw tensor bytes (no pickle anywhere;
    # the first byte is the header length's, so it may well be 0x80, pickle's protocol marker)
    (length,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8 : 8 + length])
    assert header["__metadata__"]["format"] == "trainctl-checkpoint/1"
    meta = json.loads(header["__metadata__"]["meta"])
    assert meta["epoch"] == 1 and meta["spec"]["dataset"]["name"] == "iris"
    assert {"model.output.weight", "scaler.shift", "rng.torch", "rng.batches"} <= set(header)
    assert any(key.startswith("optim.") for key in header)


def test_read_checkpoint_refuses_a_safetensors_file_that_is_not_trainctls(tmp_path: Path) -> None:
    path = tmp_path / "other.safetensors"
    save_file({"weight": torch.zeros(2)}, str(path), metadata={"format": "pt"})
    with pytest.raises(ValueError, match="not a trainctl checkpoint"):
        read_checkpoint(path)


class _Exploit:
    """Unpickling this creates a directory: proof that a pickle was loaded."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[Any, ...]:
        return (os.mkdir, (str(self.marker),))


def test_read_checkpoint_never_unpickles(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    path = tmp_path / "last.safetensors"
    path.write_bytes(pickle.dumps(_Exploit(marker)))
    with pytest.raises(Exception):  # noqa: B017 - safetensors raises its own error type
        read_checkpoint(path)
    assert not marker.exists()
    with pytest.raises(Exception):  # noqa: B017
        load_model(path)
    assert not marker.exists()


def test_checkpoint_weights_are_the_model_state(tmp_path: Path) -> None:
    from training.loop import Trainer

    trainer = Trainer(make_spec(training={"epochs": 2}), tmp_path, [])
    trainer.run()
    saved = prefixed(checkpoint_tensors(tmp_path), "model.")
    assert_same_tensors(saved, {k: v.detach() for k, v in trainer.model.state_dict().items()})


# ------------------------------------------------------------------------------ failure, cancel


def test_a_diverging_run_fails_with_an_actionable_error_and_writes_result(tmp_path: Path) -> None:
    spec = make_spec(
        dataset={"name": "diabetes"},
        normalization={"inputs": "none"},
        optimizer={"name": "sgd", "learning_rate": 10},
    )
    result = fit(spec, tmp_path)
    assert result.status == "failed"
    assert "epoch 1" in result.error and "learning_rate" in result.error  # type: ignore[operator]
    assert "clipping" in result.error and result.test is None  # type: ignore[operator]
    written = json.loads((tmp_path / "result.json").read_text())
    assert written["status"] == "failed" and written["error"] == result.error


def test_a_dataset_error_fails_the_run_with_its_message(tmp_path: Path) -> None:
    spec = JobSpec.model_validate(
        {"dataset": {"path": str(tmp_path / "missing.csv")}, "network": {"hidden_layers": [4]}}
    )
    result = fit(spec, tmp_path / "out")
    assert result.status == "failed" and "does not exist" in result.error  # type: ignore[operator]
    assert json.loads((tmp_path / "out" / "result.json").read_text())["status"] == "failed"


def test_cancelled_run_reports_cancelled_and_keeps_its_last_checkpoint(tmp_path: Path) -> None:
    result = fit(make_spec(training={"epochs": 5}), tmp_path, callbacks=[Recorder(stop_after=2)])
    assert (result.status, result.epochs_run, result.stop_reason) == ("cancelled", 2, "cancelled")
    assert read_checkpoint(tmp_path / "checkpoints" / "last.safetensors")[1]["epoch"] == 2
    assert json.loads((tmp_path / "result.json").read_text())["status"] == "cancelled"
    assert len(metrics(tmp_path)) == 2


def test_result_json_holds_the_documented_fields(tmp_path: Path) -> None:
    result = fit(make_spec(activation="logsig", initialization="zeros"), tmp_path)
    written = json.loads((tmp_path / "result.json").read_text())
    for key in (
        "status",
        "epochs_run",
        "stopped_early",
        "stop_reason",
        "best_epoch",
        "best",
        "final",
        "test",
    ):
        assert key in written
    assert written["parameters"] == 4 * 8 + 8 + 8 * 3 + 3 == result.parameters
    assert written["device"] == "cpu" and written["torch_version"] == torch.__version__
    assert "zeros_initialization" in written["warnings"]
    assert "layers" not in written["final"]
    assert set(written["test"]) == {"test_loss", "test_accuracy"}


def test_same_seed_gives_identical_runs_and_another_seed_does_not() -> None:
    spec = make_spec(**STRESS)
    first, second = Recorder(), Recorder()
    fit(spec, callbacks=[first])
    fit(spec, callbacks=[second])
    assert without_timing(first.records) == without_timing(second.records)
    other = Recorder()
    fit(make_spec(**merge(STRESS, {"training": {"seed": 1}})), callbacks=[other])
    assert other.records[0]["train_loss"] != first.records[0]["train_loss"]


def test_device_auto_picks_cuda_only_when_available(monkeypatch: pytest.MonkeyPatch) -> None:
    from training.device import resolve_device

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert resolve_device("auto") == torch.device("cpu")
    with pytest.raises(RuntimeError, match="CUDA is not available"):
        resolve_device("cuda:0")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert resolve_device("auto") == torch.device("cuda")
    assert resolve_device("cpu") == torch.device("cpu")


@pytest.mark.parametrize(
    "optimizer",
    [
        {"name": "momentum", "schedule": {"type": "cosine", "min_learning_rate": 0.001}},
        {"name": "nesterov", "schedule": {"type": "plateau", "patience": 0}},
        {"name": "rmsprop", "momentum": 0.5},
        {"name": "adagrad"},
        {"name": "adamw", "schedule": {"type": "step", "step_size": 2}},
    ],
    ids=["momentum-cosine", "nesterov-plateau", "rmsprop", "adagrad", "adamw-step"],
)
def test_resume_restores_every_optimizer_and_schedule_state(
    tmp_path: Path, optimizer: dict[str, Any]
) -> None:
    spec = make_spec(optimizer=optimizer, training={"epochs": 6, "diagnostics_every": 3})
    straight = Recorder()
    fit(spec, tmp_path / "straight", callbacks=[straight])
    _, records = interrupted_then_resumed(spec, tmp_path / "resumed", after=3)
    assert without_timing(records) == without_timing(straight.records)
    assert_same_tensors(checkpoint_tensors(tmp_path / "resumed"), checkpoint_tensors(tmp_path / "straight"))


class EpochCounter(Recorder):
    """A stateful callback: counts the epochs it has seen, across resumes."""

    def __init__(self, stop_after: int | None = None) -> None:
        super().__init__(stop_after)
        self.seen = 0

    def on_epoch_end(self, record: Any) -> None:
        """Count the epoch."""
        super().on_epoch_end(record)
        self.seen += 1

    def state_dict(self) -> dict[str, Any]:
        """The count so far."""
        return {"seen": self.seen}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Continue the count."""
        self.seen = state["seen"]


def test_callback_state_travels_in_the_checkpoint_and_comes_back_on_resume(tmp_path: Path) -> None:
    spec = make_spec(training={"epochs": 5}, generalization={"early_stopping": {"patience": 4}})
    fit(spec, tmp_path, callbacks=[EpochCounter(stop_after=2)])
    states = read_checkpoint(tmp_path / "checkpoints" / "last.safetensors")[1]["callbacks"]
    assert states["EpochCounter"] == {"seen": 2}
    assert set(states["EarlyStopper"]) == {"best", "best_epoch", "bad_epochs"}
    assert states["CheckpointWriter"]["best_record"]["epoch"] == states["EarlyStopper"]["best_epoch"]
    resumed = EpochCounter()
    fit(spec, tmp_path, callbacks=[resumed], resume=True)
    assert resumed.seen == 5 and len(resumed.records) == 3


@pytest.mark.parametrize(
    ("labels", "expected"),
    [
        ([3, 1, 2], [1, 2, 3]),
        ([1.0, 0.0], [0, 1]),
        (["dog", "cat"], ["cat", "dog"]),
        ([0.5, 1.5], [0.5, 1.5]),
    ],
)
def test_class_labels_keep_the_type_of_the_data(labels: list[Any], expected: list[Any]) -> None:
    y = np.array(labels * 5, dtype=object if isinstance(labels[0], str) else None)
    table = make_table(
        np.arange(len(y) * 2, dtype=float).reshape(len(y), 2), y, ["a", "b"], Task.classification
    )
    assert table.class_labels == expected
    assert [type(label) for label in table.class_labels or []] == [type(value) for value in expected]


def test_digits_predict_integer_classes(tmp_path: Path) -> None:
    spec = make_spec(dataset={"name": "digits"}, training={"epochs": 1})
    fit(spec, tmp_path)
    prediction = load_model(tmp_path / "checkpoints" / "last.safetensors").predict(np.zeros((2, 64)))
    assert prediction["class_labels"] == list(range(10))
    assert all(isinstance(label, int) for label in prediction["classes"])


class LinkWatch(Callback):
    """At each `last` announcement: whether it is the very file `best` is (a hard link)."""

    def __init__(self) -> None:
        self.best: list[int] = []
        self.linked: dict[int, bool] = {}

    def on_checkpoint(self, info: Any) -> None:
        if info.name == "best":
            self.best.append(info.epoch)
        elif info.name == "last":
            self.linked[info.epoch] = info.path.samefile(info.path.with_name("best.safetensors"))


def test_last_of_a_best_epoch_is_a_link_to_best_and_later_writes_part_them(tmp_path: Path) -> None:
    watch = LinkWatch()
    result = fit(
        make_spec(**merge(STRESS, {"generalization": {"early_stopping": {"patience": 3}}})), tmp_path, [watch]
    )
    assert watch.linked == {epoch: epoch in watch.best for epoch in range(1, result.epochs_run + 1)}
    assert any(watch.linked.values()) and not all(watch.linked.values())
    best = read_checkpoint(tmp_path / "checkpoints" / "best.safetensors")[1]["epoch"]
    assert (best, read_checkpoint(tmp_path / "checkpoints" / "last.safetensors")[1]["epoch"]) == (
        result.best_epoch,
        result.epochs_run,
    )
