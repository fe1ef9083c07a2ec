"""Every number means what its name says: each test here checks a metric against independent code."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from sklearn.linear_model import LinearRegression
from torch.nn import functional as F

from tests.training.conftest import Recorder, make_spec, run_fit
from training.checkpoint import load_model
from training.data import prepare
from training.loop import Trainer, fit
from training.network import weight_matrices
from training.spec import EXAMPLE_SPEC, InputScaling, JobSpec, lint

# ------------------------------------------------------------------------- global gradient norm


def captured_norms(spec: JobSpec) -> tuple[list[float], list[dict[str, Any]]]:
    """The pre-clip global gradient norm of every step (computed here, from the gradients), and records."""
    recorder = Recorder()
    trainer = Trainer(spec, None, [recorder])
    norms: list[float] = []

    def before_step(*args: Any, **kwargs: Any) -> None:
        grads = [p.grad.double().flatten() for p in trainer.params if p.grad is not None]
        norms.append(torch.cat(grads).norm().item())

    trainer.optimizer.register_step_pre_hook(before_step)  # with clipping: sees clipped gradients
    assert trainer.run().status == "succeeded"
    return norms, recorder.records


def test_grad_norm_covers_every_step_with_and_without_clipping_and_without_diagnostics() -> None:
    base = {"training": {"epochs": 2, "diagnostics_every": 0}, "network": {"hidden_layers": [16]}}
    norms, records = captured_norms(make_spec(**base))
    steps = len(norms) // 2  # iris: 96 training rows in batches of 16
    for epoch, record in enumerate(records):
        mine = norms[epoch * steps : (epoch + 1) * steps]
        assert record["grad_norm"] == pytest.approx(sum(mine) / len(mine), rel=1e-5)
        assert record["grad_norm_max"] == pytest.approx(max(mine), rel=1e-5)
    # a clipping threshold that never acts changes nothing: the same steps, the same figures
    _, clipped = captured_norms(make_spec(**base, clipping={"max_norm": 1e6}))
    for plain, never in zip(records, clipped, strict=True):
        assert never["clipped_fraction"] == 0
        assert never["grad_norm"] == pytest.approx(plain["grad_norm"], rel=1e-5)
        assert never["grad_norm_max"] == pytest.approx(plain["grad_norm_max"], rel=1e-5)


# ------------------------------------------------------------------ eval-mode training metrics


def test_train_loss_is_measured_in_eval_mode_like_val_loss_and_the_running_loss_is_kept_apart() -> None:
    spec = make_spec(generalization={"dropout": 0.5}, training={"epochs": 1}, network={"hidden_layers": [32]})
    recorder = Recorder()
    trainer = Trainer(spec, None, [recorder])
    trainer.run()
    [record] = recorder.records
    model, data = trainer.model.eval(), trainer.data
    with torch.no_grad():
        train_out, val_out = model(data.X_train), model(data.X_val)
    assert record["train_loss"] == pytest.approx(F.cross_entropy(train_out, data.y_train).item(), rel=1e-5)
    assert record["val_loss"] == pytest.approx(F.cross_entropy(val_out, data.y_val).item(), rel=1e-5)
    accuracy = (train_out.argmax(1) == data.y_train).float().mean().item()
    assert record["train_accuracy"] == pytest.approx(accuracy)
    # the running figure is what the steps saw, with dropout on and the weights moving: another number
    assert record["train_running_loss"] != pytest.approx(record["train_loss"], rel=1e-3)
    assert 0 <= record["train_running_accuracy"] <= 1


def test_the_training_sample_is_bounded_and_fixed_by_the_seed() -> None:
    spec = make_spec(dataset={"name": "moons", "samples": 20_000, "validation_fraction": 0.1})
    data = prepare(spec.dataset, InputScaling.zscore, 0, torch.device("cpu"))
    assert len(data.X_train) > 10_000
    X, y = data.train_sample(10_000, seed=0)
    again, _ = data.train_sample(10_000, seed=0)
    other, _ = data.train_sample(10_000, seed=1)
    assert len(X) == len(y) == 10_000 and torch.equal(X, again) and not torch.equal(X, other)
    rows = {tuple(row) for row in data.X_train.tolist()}
    assert all(tuple(row) in rows for row in X[:100].tolist())  # rows of the training split
    small = make_spec()
    iris = prepare(small.dataset, InputScaling.zscore, 0, torch.device("cpu"))
    assert iris.train_sample(10_000, seed=0)[0] is iris.X_train  # small splits are measured whole


# --------------------------------------------------------------------------- target scaling


def test_regression_metrics_and_predictions_are_in_the_original_units(tmp_path: Path) -> None:
    spec = make_spec(dataset={"name": "diabetes"}, training={"epochs": 3})
    result, records = run_fit(spec, tmp_path)
    raw = prepare(spec.dataset, InputScaling.none, 0, torch.device("cpu"))  # unscaled targets
    model = load_model(tmp_path / "checkpoints" / "last.safetensors")
    values = torch.tensor(model.predict(raw.X_test.numpy())["values"])
    rmse = (values - raw.y_test).pow(2).mean().sqrt().item()
    assert result.test is not None and result.test["test_rmse"] == pytest.approx(rmse, rel=1e-4)
    assert result.test["test_loss"] == pytest.approx(rmse**2, rel=1e-4)
    assert records[-1]["val_rmse"] == pytest.approx(math.sqrt(records[-1]["val_loss"]))
    assert records[-1]["val_rmse"] > 20  # diabetes targets run from 25 to 346: original units


def test_the_example_spec_on_diabetes_beats_the_mean_and_nears_linear_regression_on_every_seed() -> None:
    for seed in range(5):
        raw = {**EXAMPLE_SPEC, "dataset": {"name": "diabetes"}}
        spec = JobSpec.model_validate({**raw, "training": {**raw["training"], "seed": seed, "device": "cpu"}})
        result = fit(spec)
        data = prepare(spec.dataset, InputScaling.none, seed, torch.device("cpu"))
        X_train, y_train, X_test, y_test = (
            t.numpy() for t in (data.X_train, data.y_train, data.X_test, data.y_test)
        )
        linear = np.sqrt(((LinearRegression().fit(X_train, y_train).predict(X_test) - y_test) ** 2).mean())
        mean = np.sqrt(((y_train.mean() - y_test) ** 2).mean())
        assert result.test is not None
        # measured: test RMSE 54-64 against the mean's 72-75 and linear regression's 54-60 (ratio ≤ 1.06)
        assert result.test["test_rmse"] < 0.95 * mean, (seed, result.test, mean)
        assert result.test["test_rmse"] < 1.15 * linear, (seed, result.test, linear)


def test_target_scaling_none_trains_on_raw_targets() -> None:
    spec = make_spec(dataset={"name": "diabetes"}, normalization={"targets": "none"})
    assert Trainer(spec, None, []).data.targets is None
    assert Trainer(make_spec(dataset={"name": "diabetes"}), None, []).data.targets is not None
    assert Trainer(make_spec(), None, []).data.targets is None  # classification: nothing to scale


# ---------------------------------------------------------------------------- stratification


def lopsided_csv(folder: Path) -> Path:
    """100 rows: class a 60, class b 39, class c a single example."""
    labels = ["a"] * 60 + ["b"] * 39 + ["c"]
    rows = ["x0,x1,label"] + [f"{i % 7},{(i * 3) % 11},{label}" for i, label in enumerate(labels)]
    path = folder / "lopsided.csv"
    path.write_text("\n".join(rows) + "\n")
    return path


def test_a_single_example_class_stays_in_training_and_the_other_classes_stay_stratified(
    tmp_path: Path,
) -> None:
    spec = JobSpec.model_validate(
        {
            "dataset": {
                "path": str(lopsided_csv(tmp_path)),
                "test_fraction": 0.2,
                "validation_fraction": 0.2,
            },
            "network": {"hidden_layers": [4]},
            "training": {"epochs": 1, "device": "cpu"},
        }
    )
    data = prepare(spec.dataset, InputScaling.zscore, 0, torch.device("cpu"))
    assert data.unstratified_classes == ["c"]
    assert (data.y_train == 2).sum().item() == 1  # c (index 2) kept for training
    for split in (data.y_val, data.y_test):
        share = (split == 0).float().mean().item()
        assert abs(share - 60 / 99) <= 1 / len(split) + 1e-9, share  # a:b as in the whole set
    result = fit(spec)
    assert result.unstratified_classes == ["c"] and "unstratified_split" in result.warnings
    warning = lint(spec, unstratified_classes=["c"])[-1]
    assert warning.code == "unstratified_split" and "c" in warning.message


# ------------------------------------------------------------------------------- dead units


def test_dead_fraction_counts_units_no_training_example_activates() -> None:
    spec = make_spec(
        activation="relu",
        network={"hidden_layers": [16]},
        training={"epochs": 1, "diagnostics_every": 10},
    )
    recorder = Recorder()
    trainer = Trainer(spec, None, [recorder])
    with torch.no_grad():  # four units fire on a few examples only, four on none
        trainer.model.linears[0].bias[:4] = -2.5
        trainer.model.linears[0].bias[4:8] = -100.0
    trainer.run()
    layer = trainer.model.linears[0]
    with torch.no_grad():
        net_input = trainer.data.X_train @ layer.weight.T + layer.bias
    expected = (net_input <= 0).all(dim=0).float().mean().item()
    assert recorder.records[0]["layers"][0]["dead_fraction"] == pytest.approx(expected)
    assert 0.25 <= expected < 0.5  # the rarely firing units are alive: only never-firing ones are dead


# ------------------------------------------------------------------------- AdamW weight decay


def test_adamw_decays_the_weight_matrices_that_l2_covers_and_nothing_else() -> None:
    spec = make_spec(optimizer={"name": "adamw", "weight_decay": 0.1}, normalization={"layers": "batch"})
    trainer = Trainer(spec, None, [])
    decayed = [g for g in trainer.optimizer.param_groups if g["weight_decay"] > 0]
    assert [id(p) for g in decayed for p in g["params"]] == [id(w) for w in weight_matrices(trainer.model)]
    before = {name: p.detach().clone() for name, p in trainer.model.named_parameters()}
    trainer.optimizer.zero_grad()
    for param in trainer.params:
        param.grad = torch.zeros_like(param)  # no gradient: only weight decay can move a parameter
    trainer.optimizer.step()
    for name, param in trainer.model.named_parameters():
        if name.endswith("weight") and param.dim() > 1:
            torch.testing.assert_close(param.detach(), before[name] * (1 - 0.001 * 0.1))
        else:  # biases and batch-norm gains
            assert torch.equal(param.detach(), before[name]), name


# ------------------------------------------------------------------------------ cosine extended


def test_extending_a_cosine_run_follows_the_cosine_of_the_new_horizon(tmp_path: Path) -> None:
    schedule = {"name": "sgd", "learning_rate": 0.01, "schedule": {"type": "cosine"}}
    _, short = run_fit(make_spec(optimizer=schedule, training={"epochs": 3}), tmp_path)
    _, extended = run_fit(make_spec(optimizer=schedule, training={"epochs": 6}), tmp_path, resume=True)
    _, straight = run_fit(make_spec(optimizer=schedule, training={"epochs": 6}))
    assert [r["learning_rate"] for r in short] == pytest.approx([0.01, 0.005, 0.0], abs=1e-12)
    rates = [r["learning_rate"] for r in extended]
    assert rates == pytest.approx([r["learning_rate"] for r in straight[3:]], abs=1e-12)
    assert rates == sorted(rates, reverse=True)  # it keeps falling, to the minimum at the last epoch


# ------------------------------------------------------------------------------ zeros lint


def test_the_zeros_initialization_message_says_what_happens() -> None:
    def message(**overrides: Any) -> str:
        spec = make_spec(initialization="zeros", **overrides)
        return next(w.message for w in lint(spec) if w.code == "zeros_initialization")

    def hidden_rows_differ(**overrides: Any) -> bool:
        trainer = Trainer(make_spec(initialization="zeros", training={"epochs": 5}, **overrides), None, [])
        trainer.run()
        weight = trainer.model.linears[0].weight.detach()
        return bool((weight - weight[:1]).abs().max() > 1e-3 * weight.abs().max())

    sigmoid = {"activation": "sigmoid", "optimizer": {"name": "sgd", "learning_rate": 0.5}}
    assert "stay identical" in message(**sigmoid) and not hidden_rows_differ(**sigmoid)
    dropout = {**sigmoid, "generalization": {"dropout": 0.3}}
    assert "only dropout" in message(**dropout) and hidden_rows_differ(**dropout)
    assert "never learn" in message(activation="relu")
    trainer = Trainer(make_spec(initialization="zeros", activation="relu"), None, [])
    trainer.run()
    assert trainer.model.linears[0].weight.abs().max() == 0  # relu'(0) = 0: no gradient ever arrives
