"""The techniques at work inside fit(): vanishing gradients, clipping, early stopping, L2, optimizers,
schedules and per-layer diagnostics."""

from __future__ import annotations

import copy
import itertools
import math
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn
from torch.nn import functional as F

from tests.training.conftest import Recorder, make_spec, run_fit
from training.callbacks import EarlyStopper
from training.checkpoint import prefixed, read_checkpoint
from training.loop import Trainer
from training.network import weight_matrices
from training.optim import build_optimizer, clip_gradients, global_grad_norm, l2_penalty
from training.spec import JobSpec, NormClipping, ValueClipping

# ------------------------------------------------------------------------------- vanishing gradient


def layer_grad_norms(**overrides: Any) -> list[float]:
    """Per-layer weight-gradient norms (input side first) of one epoch of a 10-layer net on digits."""
    spec = make_spec(
        dataset={"name": "digits"},
        network={"hidden_layers": [32] * 10},
        training={"epochs": 1, "batch_size": 64, "diagnostics_every": 1},
        **overrides,
    )
    _, records = run_fit(spec)
    return [layer["grad_norm"] for layer in records[0]["layers"]]


def test_deep_sigmoid_net_first_layer_gradient_vanishes() -> None:
    norms = layer_grad_norms(activation="sigmoid")
    assert len(norms) == 11
    assert norms[-1] / norms[0] >= 100, norms
    assert norms[-2] / norms[0] >= 100, norms  # last hidden layer against the first
    # the gradient shrinks layer after layer on the way back
    assert all(later > earlier for earlier, later in itertools.pairwise(norms)), norms


@pytest.mark.parametrize(
    "overrides",
    [
        {"activation": "relu"},
        {"activation": "relu", "initialization": "he_normal"},
        {"activation": "sigmoid", "normalization": {"layers": "batch"}},
    ],
    ids=["relu", "relu-he", "sigmoid-batch-norm"],
)
def test_relu_or_batch_norm_closes_the_gradient_gap(overrides: dict[str, Any]) -> None:
    norms = layer_grad_norms(**overrides)
    assert 0.1 < norms[-1] / norms[0] < 10, norms


# -------------------------------------------------------------------------------------- clipping


def params_with_gradients(scale: float) -> list[nn.Parameter]:
    """Three parameters whose gradients are seeded random values times scale."""
    generator = torch.Generator().manual_seed(0)
    params = [nn.Parameter(torch.zeros(shape)) for shape in ((5, 4), (5,), (3, 5))]
    for param in params:
        param.grad = torch.randn(param.shape, generator=generator) * scale
    return params


def test_clip_gradients_max_norm_rescales_to_the_threshold() -> None:
    params = params_with_gradients(10.0)
    before = [p.grad.clone() for p in params]  # type: ignore[union-attr]
    norm, acted = clip_gradients(NormClipping(max_norm=1.0), params)
    assert norm is not None and acted is not None
    assert norm.item() == pytest.approx(
        torch.linalg.vector_norm(torch.cat([g.flatten() for g in before])).item()
    )
    assert bool(acted) and norm.item() > 1.0
    assert global_grad_norm(params).item() <= 1.0 + 1e-5
    assert global_grad_norm(params).item() == pytest.approx(1.0, rel=1e-4)
    # direction kept: every gradient scaled by the same factor
    factor = params[0].grad[0, 0] / before[0][0, 0]  # type: ignore[index]
    for param, old in zip(params, before, strict=True):
        torch.testing.assert_close(param.grad, old * factor)


def test_clip_gradients_max_norm_leaves_small_gradients_alone() -> None:
    params = params_with_gradients(0.01)
    before = [p.grad.clone() for p in params]  # type: ignore[union-attr]
    _, acted = clip_gradients(NormClipping(max_norm=1.0), params)
    assert not bool(acted)
    for param, old in zip(params, before, strict=True):
        torch.testing.assert_close(param.grad, old)


def test_clip_gradients_max_value_clamps_elements() -> None:
    params = params_with_gradients(1.0)
    before = [p.grad.clone() for p in params]  # type: ignore[union-attr]
    _, acted = clip_gradients(ValueClipping(max_value=0.5), params)
    assert bool(acted)
    for param, old in zip(params, before, strict=True):
        torch.testing.assert_close(param.grad, old.clamp(-0.5, 0.5))


def applied_gradients(spec: JobSpec) -> tuple[list[torch.Tensor], list[dict[str, Any]]]:
    """Run a Trainer, capturing the gradient the optimizer applies at every step, and the records."""
    recorder = Recorder()
    trainer = Trainer(spec, None, [recorder])
    applied: list[torch.Tensor] = []
    step = trainer.optimizer.step

    def capturing_step(*args: Any, **kwargs: Any) -> Any:
        applied.append(torch.cat([p.grad.flatten() for p in trainer.params if p.grad is not None]))
        return step(*args, **kwargs)

    trainer.optimizer.step = capturing_step  # type: ignore[method-assign]
    assert trainer.run().status == "succeeded"
    return applied, recorder.records


CLIP_BASE: dict[str, Any] = {
    "dataset": {"name": "diabetes"},
    "network": {"hidden_layers": [16]},
    "optimizer": {"name": "sgd", "learning_rate": 0.001},
    "training": {"epochs": 2, "batch_size": 32},
}


def test_max_norm_bounds_every_applied_gradient_and_clipped_fraction_reports_it() -> None:
    max_norm = 5.0
    applied, records = applied_gradients(make_spec(**CLIP_BASE, clipping={"max_norm": max_norm}))
    norms = [torch.linalg.vector_norm(g).item() for g in applied]
    assert max(norms) <= max_norm * (1 + 1e-5)
    for record in records:
        assert record["grad_norm_max"] > max_norm  # pre-clip norms are reported
        assert 0 < record["clipped_fraction"] <= 1
    unclipped, plain_records = applied_gradients(make_spec(**CLIP_BASE))
    assert max(torch.linalg.vector_norm(g).item() for g in unclipped) > max_norm  # clipping had work to do
    assert plain_records[0]["clipped_fraction"] is None


def test_max_norm_above_every_gradient_reports_zero_clipped_fraction() -> None:
    _, records = applied_gradients(make_spec(**CLIP_BASE, clipping={"max_norm": 1e9}))
    assert all(record["clipped_fraction"] == 0 for record in records)


def test_max_value_bounds_every_applied_gradient_element() -> None:
    applied, records = applied_gradients(make_spec(**CLIP_BASE, clipping={"max_value": 0.5}))
    assert max(g.abs().max().item() for g in applied) <= 0.5
    assert any(g.abs().max().item() == 0.5 for g in applied)
    assert all(record["clipped_fraction"] > 0 for record in records)


# ------------------------------------------------------------------------------- early stopping

OVERFIT: dict[str, Any] = {
    "dataset": {"name": "spirals", "samples": 150, "noise": 0.6},
    "network": {"hidden_layers": [128, 128]},
    "optimizer": {"name": "adam", "learning_rate": 0.01},
    "training": {"epochs": 100, "batch_size": 16, "diagnostics_every": 0},
}


def overfitting_spec(**stopping: Any) -> JobSpec:
    """A big net on a small noisy dataset with a high learning rate, with early stopping."""
    return make_spec(**OVERFIT, generalization={"early_stopping": {"patience": 5, **stopping}})


def state_of(checkpoint: Path) -> dict[str, torch.Tensor]:
    """Model tensors of a checkpoint file."""
    return prefixed(read_checkpoint(checkpoint)[0], "model.")


def assert_same_state(model: nn.Module, state: dict[str, torch.Tensor]) -> None:
    """The model's state dict equals state exactly."""
    current = model.state_dict()
    assert current.keys() == state.keys()
    for key, value in state.items():
        assert torch.equal(current[key], value), key


def test_early_stopping_stops_an_overfitting_run_and_restores_the_best_weights(tmp_path: Path) -> None:
    trainer = Trainer(overfitting_spec(), tmp_path, [])
    result = trainer.run()
    val_losses = [json_line["val_loss"] for json_line in read_metrics(tmp_path)]
    assert result.stopped_early and result.epochs_run < 100
    assert result.best_epoch is not None and result.best_epoch < result.epochs_run
    assert result.epochs_run == result.best_epoch + 5
    assert min(val_losses) == val_losses[result.best_epoch - 1] == result.best.val_loss  # type: ignore[union-attr]
    assert "early stopping" in result.stop_reason  # type: ignore[operator]
    best = state_of(tmp_path / "checkpoints" / "best.safetensors")
    assert_same_state(trainer.model, best)
    last = state_of(tmp_path / "checkpoints" / "last.safetensors")
    assert not torch.equal(last["output.weight"], best["output.weight"])
    # test metrics come from the restored weights
    stats = trainer.evaluate(trainer.data.X_test, trainer.data.y_test)
    assert result.test == {"test_loss": stats["loss"].item(), "test_accuracy": stats["correct"].item()}


def read_metrics(out: Path) -> list[dict[str, Any]]:
    """The records of out/metrics.jsonl."""
    import json

    return [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]


def test_restore_best_false_keeps_the_last_weights(tmp_path: Path) -> None:
    trainer = Trainer(overfitting_spec(restore_best=False), tmp_path, [])
    result = trainer.run()
    assert result.stopped_early and result.best_epoch < result.epochs_run  # type: ignore[operator]
    assert_same_state(trainer.model, state_of(tmp_path / "checkpoints" / "last.safetensors"))


def test_early_stopping_min_delta_counts_only_big_improvements() -> None:
    spec = make_spec(
        generalization={"early_stopping": {"patience": 3, "min_delta": 10.0}}, training={"epochs": 20}
    )
    result, records = run_fit(spec)
    assert (result.best_epoch, result.epochs_run) == (1, 4)
    assert records[-1]["val_loss"] < records[0]["val_loss"]  # it did improve, by less than min_delta
    stopper = EarlyStopper("val_loss", patience=2, min_delta=0.1)
    assert [stopper.update(v, e) for e, v in enumerate([1.0, 0.95, 0.89, 0.8], start=1)] == [
        True,
        False,
        True,
        False,
    ]
    assert stopper.best_epoch == 3 and stopper.bad_epochs == 1 and not stopper.stopped


def test_early_stopping_on_val_accuracy_maximizes() -> None:
    spec = make_spec(
        generalization={"early_stopping": {"patience": 4, "monitor": "val_accuracy"}},
        optimizer={"name": "adam", "learning_rate": 0.02},
        training={"epochs": 30},
    )
    result, records = run_fit(spec)
    accuracies = [record["val_accuracy"] for record in records]
    assert result.best.val_accuracy == max(accuracies)  # type: ignore[union-attr]
    assert result.best_epoch == accuracies.index(max(accuracies)) + 1
    stopper = EarlyStopper("val_accuracy", patience=2)
    assert [stopper.update(v, e) for e, v in enumerate([0.5, 0.7, 0.6, 0.65], start=1)] == [
        True,
        True,
        False,
        False,
    ]
    assert stopper.stopped and stopper.best == 0.7


def test_early_stopping_without_validation_split_watches_training_loss() -> None:
    spec = make_spec(
        dataset={"validation_fraction": 0.0},
        generalization={"early_stopping": {"patience": 2}},
        training={"epochs": 4},
    )
    result, records = run_fit(spec)
    assert result.status == "succeeded"
    assert records[0]["val_loss"] is None
    assert result.best.train_loss == min(r["train_loss"] for r in records)  # type: ignore[union-attr]


# ------------------------------------------------------------------------------------------ L2


def test_l2_loss_is_data_loss_plus_lambda_sum_of_squared_weight_matrices() -> None:
    l2 = 0.05
    spec = make_spec(
        generalization={"l2": l2},
        normalization={"layers": "batch"},
        network={"hidden_layers": [8, 6]},
        optimizer={"name": "sgd", "learning_rate": 0.1},
        training={"epochs": 1, "batch_size": 512},  # one step on the whole training split
    )
    trainer = Trainer(spec, None, [])
    initial = copy.deepcopy(trainer.model)
    captured: list[dict[str, torch.Tensor]] = []
    step = trainer.optimizer.step

    def capturing_step(*args: Any, **kwargs: Any) -> Any:
        captured.append({n: p.grad.clone() for n, p in trainer.model.named_parameters()})  # type: ignore[union-attr]
        return step(*args, **kwargs)

    trainer.optimizer.step = capturing_step  # type: ignore[method-assign]
    trainer.run()
    [fit_grads] = captured

    def manual_grads(penalized: list[nn.Parameter], model: nn.Module) -> dict[str, torch.Tensor]:
        model.zero_grad()
        loss = F.cross_entropy(model(trainer.data.X_train), trainer.data.y_train)
        (loss + l2 * sum(p.pow(2).sum() for p in penalized)).backward()
        return {n: p.grad.clone() for n, p in model.named_parameters()}  # type: ignore[union-attr]

    model = copy.deepcopy(initial).train()
    linear_weights = [m.weight for m in model.modules() if isinstance(m, nn.Linear)]
    assert len(linear_weights) == 3
    expected = manual_grads(linear_weights, model)
    for name, grad in expected.items():
        torch.testing.assert_close(fit_grads[name], grad, rtol=1e-4, atol=1e-6)
    # penalizing everything (biases, batch-norm gains) would give other gradients
    everything = copy.deepcopy(initial).train()
    wrong = manual_grads(list(everything.parameters()), everything)
    assert not torch.allclose(fit_grads["hidden.norms.0.weight"], wrong["hidden.norms.0.weight"], rtol=1e-3)
    assert not torch.allclose(fit_grads["hidden.linears.0.bias"], wrong["hidden.linears.0.bias"], rtol=1e-3)


def test_l2_penalty_covers_linear_weight_matrices_only() -> None:
    model = Trainer(
        make_spec(normalization={"layers": "layer"}, network={"hidden_layers": [5, 4]}), None, []
    ).model
    weights = weight_matrices(model)
    assert [tuple(w.shape) for w in weights] == [(5, 4), (4, 5), (3, 4)]
    with torch.no_grad():
        for param in model.parameters():
            param.fill_(0.5)
    expected = 0.01 * 0.25 * (20 + 20 + 12)
    assert l2_penalty(weights, 0.01).item() == pytest.approx(expected)


def test_record_l2_penalty_matches_the_weights() -> None:
    recorder = Recorder()
    trainer = Trainer(make_spec(generalization={"l2": 0.01}, training={"epochs": 2}), None, [recorder])
    records = recorder.records
    trainer.run()
    expected = 0.01 * sum(w.detach().pow(2).sum().item() for w in weight_matrices(trainer.model))
    assert records[-1]["l2_penalty"] == pytest.approx(expected, rel=1e-5)
    assert "l2_penalty" not in run_fit(make_spec())[1][0]


def test_l2_shrinks_the_weights() -> None:
    def weight_norm(l2: float) -> float:
        spec = make_spec(generalization={"l2": l2}, network={"hidden_layers": [32]}, training={"epochs": 10})
        trainer = Trainer(spec, None, [])
        trainer.run()
        return sum(w.detach().pow(2).sum().item() for w in weight_matrices(trainer.model))

    assert weight_norm(0.2) < 0.7 * weight_norm(0.0)


# --------------------------------------------------------------------------- optimizers, schedules

OPTIMIZERS = [
    ("sgd", 0.1),
    ("momentum", 0.05),
    ("nesterov", 0.05),
    ("adam", 0.01),
    ("adamw", 0.01),
    ("rmsprop", 0.01),
    ("adagrad", 0.1),
]


@pytest.mark.parametrize(("name", "learning_rate"), OPTIMIZERS)
def test_every_optimizer_trains_iris_better_than_chance(name: str, learning_rate: float) -> None:
    spec = make_spec(
        optimizer={"name": name, "learning_rate": learning_rate},
        network={"hidden_layers": [16]},
        training={"epochs": 5, "diagnostics_every": 0},
    )
    result, records = run_fit(spec)
    assert result.status == "succeeded"
    assert records[-1]["train_loss"] < 0.7 * records[0]["train_loss"]
    assert records[-1]["val_accuracy"] > 0.6 and result.test["test_accuracy"] > 0.6  # type: ignore[index]
    assert all(record["learning_rate"] == learning_rate for record in records)


def test_optimizer_names_map_to_the_right_torch_optimizers() -> None:
    params = [nn.Parameter(torch.zeros(2))]

    def built(raw: dict[str, Any]) -> torch.optim.Optimizer:
        return build_optimizer(make_spec(optimizer=raw).optimizer, params)

    sgd = built({"name": "sgd", "learning_rate": 0.3})
    assert type(sgd) is torch.optim.SGD and sgd.defaults["momentum"] == 0 and sgd.defaults["lr"] == 0.3
    momentum = built({"name": "momentum", "momentum": 0.8})
    assert momentum.defaults["momentum"] == 0.8 and not momentum.defaults["nesterov"]
    assert built({"name": "nesterov"}).defaults["nesterov"]
    adam = built({"name": "adam", "betas": [0.8, 0.99], "eps": 1e-6})
    assert (
        type(adam) is torch.optim.Adam
        and adam.defaults["betas"] == (0.8, 0.99)
        and adam.defaults["eps"] == 1e-6
    )
    adamw = built({"name": "adamw", "weight_decay": 0.2})
    assert type(adamw) is torch.optim.AdamW and adamw.param_groups[0]["weight_decay"] == 0.2
    rmsprop = built({"name": "rmsprop", "alpha": 0.9, "momentum": 0.5})
    assert type(rmsprop) is torch.optim.RMSprop and rmsprop.defaults["alpha"] == 0.9
    assert rmsprop.defaults["momentum"] == 0.5
    assert type(built({"name": "adagrad"})) is torch.optim.Adagrad
    # L2 is a loss term, never folded into the optimizer
    assert all(
        built({"name": n}).defaults.get("weight_decay", 0) == 0 for n in ("sgd", "adam", "rmsprop", "adagrad")
    )


def learning_rates(schedule: dict[str, Any], epochs: int, learning_rate: float = 0.1) -> list[float]:
    """The learning_rate of each epoch record with the given schedule (sgd)."""
    spec = make_spec(
        optimizer={"name": "sgd", "learning_rate": learning_rate, "schedule": schedule},
        training={"epochs": epochs, "diagnostics_every": 0},
    )
    return [record["learning_rate"] for record in run_fit(spec)[1]]


def test_step_schedule_multiplies_by_gamma_every_step_size_epochs() -> None:
    rates = learning_rates({"type": "step", "step_size": 2, "gamma": 0.5}, 6)
    assert rates == pytest.approx([0.1, 0.1, 0.05, 0.05, 0.025, 0.025])


def test_cosine_schedule_falls_to_its_minimum_at_the_last_epoch() -> None:
    rates = learning_rates({"type": "cosine", "min_learning_rate": 0.01}, 5)
    assert rates[0] == pytest.approx(0.1)
    assert rates[-1] == pytest.approx(0.01)
    assert all(later < earlier for earlier, later in itertools.pairwise(rates)), rates
    middle = 0.01 + (0.1 - 0.01) * (1 + math.cos(math.pi * 2 / 4)) / 2  # epoch 3 of 5: halfway
    assert rates[2] == pytest.approx(middle)


def test_plateau_schedule_decays_when_validation_loss_stops_improving() -> None:
    spec = make_spec(
        optimizer={
            "name": "sgd",
            "learning_rate": 0.5,
            "schedule": {"type": "plateau", "patience": 0, "factor": 0.5},
        },
        training={"epochs": 12, "diagnostics_every": 0},
    )
    records = run_fit(spec)[1]
    expected, rate, best = [], 0.5, math.inf
    for record in records:
        expected.append(rate)
        if record["val_loss"] < best * (1 - 1e-4):  # ReduceLROnPlateau's default relative threshold
            best = record["val_loss"]
        else:
            rate *= 0.5
    assert [r["learning_rate"] for r in records] == pytest.approx(expected)
    assert records[-1]["learning_rate"] < 0.5  # the run did hit a plateau


# ---------------------------------------------------------------------------------- diagnostics


def layers_of(**overrides: Any) -> list[dict[str, Any]]:
    """The per-layer diagnostics of the last epoch of a tiny run."""
    spec = make_spec(
        training={"epochs": 2, "diagnostics_every": 1}, network={"hidden_layers": [8, 8]}, **overrides
    )
    return run_fit(spec)[1][-1]["layers"]


def test_diagnostics_report_every_linear_layer_input_side_first() -> None:
    layers = layers_of()
    assert [layer["name"] for layer in layers] == ["hidden1", "hidden2", "output"]
    for layer in layers:
        assert layer["grad_norm"] > 0 and layer["weight_norm"] > 0 and layer["update_ratio"] > 0
        assert layer["activation_std"] > 0


@pytest.mark.parametrize("activation", ["relu", "leaky_relu"])
def test_relu_family_reports_dead_not_saturated_fraction(activation: str) -> None:
    layers = layers_of(activation=activation)
    for layer in layers[:-1]:
        assert layer["saturated_fraction"] is None
        assert 0 <= layer["dead_fraction"] <= 1
    assert layers[-1]["dead_fraction"] is None


@pytest.mark.parametrize("activation", ["sigmoid", "tanh"])
def test_sigmoid_family_reports_saturated_not_dead_fraction(activation: str) -> None:
    layers = layers_of(activation=activation)
    for layer in layers[:-1]:
        assert layer["dead_fraction"] is None
        assert 0 <= layer["saturated_fraction"] <= 1
    assert layers[-1]["saturated_fraction"] is None


def test_saturated_fraction_sees_large_weights_saturate_sigmoids() -> None:
    big = layers_of(
        activation="sigmoid", initialization={"scheme": "normal", "std": 5.0}, dataset={"name": "digits"}
    )
    good = layers_of(activation="sigmoid", dataset={"name": "digits"})
    assert all(layer["saturated_fraction"] > 0.5 for layer in big[:-1])
    assert all(layer["saturated_fraction"] < 0.2 for layer in good[:-1])


def test_dead_fraction_sees_relu_units_pushed_negative() -> None:
    spec = make_spec(
        activation="relu", network={"hidden_layers": [8]}, training={"epochs": 1, "diagnostics_every": 1}
    )
    recorder = Recorder()
    trainer = Trainer(spec, None, [recorder])
    with torch.no_grad():
        trainer.model.linears[0].bias[:4] = -100.0  # half the units never fire
    records = recorder.records
    trainer.run()
    assert records[0]["layers"][0]["dead_fraction"] == pytest.approx(0.5)


def test_diagnostics_every_0_takes_no_per_layer_statistics_but_still_the_global_norm() -> None:
    spec = make_spec(training={"epochs": 1, "diagnostics_every": 0})
    record = run_fit(spec)[1][0]
    assert 0 < record["grad_norm"] <= record["grad_norm_max"]  # every step, for every job
    for layer in record["layers"]:
        assert layer["grad_norm"] is None and layer["activation_std"] is None
        assert layer["update_ratio"] > 0  # weight statistics cost nothing and are still there


def test_update_ratio_is_the_relative_weight_change_of_the_epoch() -> None:
    recorder = Recorder()
    trainer = Trainer(make_spec(training={"epochs": 1}), None, [recorder])
    start = [layer.weight.detach().clone() for layer in trainer.model.linear_layers()]
    records = recorder.records
    trainer.run()
    for layer, before, entry in zip(trainer.model.linear_layers(), start, records[0]["layers"], strict=True):
        expected = (layer.weight.detach() - before).norm() / before.norm()
        assert entry["update_ratio"] == pytest.approx(expected.item(), rel=1e-4)
