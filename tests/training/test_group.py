"""Replica groups: each replica of a stacked group is the job it replaces."""

from __future__ import annotations

import statistics
from pathlib import Path
from typing import Any

import pytest
import torch

from tests.training.conftest import Recorder, make_spec, run_fit
from training.checkpoint import prefixed, read_checkpoint
from training.group import fit_group
from training.grouping import replica_key
from training.loop import Trainer
from training.spec import JobSpec

IMAGES = {"dataset": {"name": "digits", "as_images": True}}
CNN = {"type": "cnn", "channels": [3], "hidden_layers": [8]}

TECHNIQUES: dict[str, dict[str, Any]] = {
    "plain": {},
    "dropout": {"generalization": {"dropout": 0.3}},
    "l2": {"generalization": {"l2": 0.01}},
    "batch-norm": {"normalization": {"layers": "batch"}},
    "layer-norm": {"normalization": {"layers": "layer"}},
    "clip-norm": {"clipping": {"max_norm": 0.1}},
    "clip-value": {"clipping": {"max_value": 0.01}},
    "sgd": {"optimizer": {"name": "sgd", "learning_rate": 0.1}},
    "momentum": {"optimizer": {"name": "momentum", "learning_rate": 0.05}},
    "nesterov": {"optimizer": {"name": "nesterov", "learning_rate": 0.05}},
    "adamw": {"optimizer": {"name": "adamw", "weight_decay": 0.1}},
    "rmsprop": {"optimizer": {"name": "rmsprop", "learning_rate": 0.01}},
    "adagrad": {"optimizer": {"name": "adagrad", "learning_rate": 0.1}},
    "plateau": {"optimizer": {"name": "adam", "schedule": {"type": "plateau", "patience": 0, "factor": 0.5}}},
    "step-schedule": {"optimizer": {"name": "adam", "schedule": {"type": "step", "step_size": 1}}},
    "he-init": {"activation": "relu", "initialization": "he_normal"},
    "sigmoid": {"activation": "sigmoid", "training": {"diagnostics_every": 1}},
    "mse": {"training": {"loss": "mse"}},
    "regression": {"dataset": {"name": "diabetes"}},
    "cnn-batch-norm-dropout": {
        **IMAGES,
        "network": CNN,
        "normalization": {"layers": "batch"},
        "generalization": {"dropout": 0.2},
    },
    "cnn-layer-norm": {**IMAGES, "network": CNN, "normalization": {"layers": "layer"}},
}


def seeds(overrides: dict[str, Any], count: int = 2, **training: Any) -> list[JobSpec]:
    """The same configuration with seeds 0..count-1."""
    section = {**overrides.get("training", {}), **training}
    return [make_spec(**{**overrides, "training": {**section, "seed": s}}) for s in range(count)]


def grouped(specs: list[JobSpec], out_dirs: list[Path] | None = None, **kwargs: Any) -> tuple[list, list]:
    """fit_group with a Recorder per replica: (results, records per replica)."""
    recorders = [Recorder() for _ in specs]
    results = fit_group(specs, out_dirs, [[r] for r in recorders], **kwargs)
    return results, [r.records for r in recorders]


def relative(a: float, b: float) -> float:
    return abs(a - b) / max(abs(b), 1e-12)


@pytest.mark.parametrize("technique", list(TECHNIQUES))
def test_each_replica_starts_as_the_job_alone(technique: str) -> None:
    assert_first_epochs_as_alone(seeds(TECHNIQUES[technique], epochs=1), "batch-norm" in technique)


@pytest.mark.parametrize("network", [{}, {**IMAGES, "network": CNN}], ids=["mlp", "cnn"])
def test_replicas_of_other_activations_train_together_each_with_its_own(network: dict[str, Any]) -> None:
    # relu counts dead units, sigmoid and tanh saturation (diagnostics every step: every rule sampled)
    training = {"epochs": 1, "diagnostics_every": 1}
    specs = [
        make_spec(**network, activation=activation, training={**training, "seed": seed})
        for activation, seed in [("relu", 0), ("sigmoid", 0), ("tanh", 1), ("relu", 1)]
    ]
    assert len({replica_key(spec) for spec in specs}) == 1  # one group
    assert_first_epochs_as_alone(specs, batch_norm=False)


def assert_first_epochs_as_alone(specs: list[JobSpec], batch_norm: bool) -> None:
    """Each replica's first epoch (losses, per-layer diagnostics) is the one of its job run alone."""
    results, records = grouped(specs)
    for spec, result, replica in zip(specs, results, records, strict=True):
        alone, solo = run_fit(spec)
        assert result.status == alone.status == "succeeded"
        assert set(replica[0]) == set(solo[0])  # the same metrics apply, and are measured
        # the loss the training steps saw (training mode, running over the epoch)
        assert relative(replica[0]["train_running_loss"], solo[0]["train_running_loss"]) < 1e-4
        # Eval-mode losses after batch norm use its running mean. With Adam, the rounding noise in the
        # (zero) gradient of a bias in front of a batch norm becomes steps of ±lr that move that mean:
        # a job alone shows the same spread between CPU kernels (ATEN_CPU_CAPABILITY=default: 2e-4 to 3e-4).
        bound = 1e-3 if batch_norm else 1e-4
        for loss in ("train_loss", "val_loss"):
            assert relative(replica[0][loss], solo[0][loss]) < bound, loss
        # the per-layer diagnostics (sampled stacked, for all replicas at once) are the job's own
        for together, own in zip(replica[0]["layers"], solo[0]["layers"], strict=True):
            for field, value in own.items():
                if isinstance(value, float):
                    assert together[field] == pytest.approx(value, rel=1e-3, abs=1e-5), (own["name"], field)
                else:
                    assert together[field] == value, (own["name"], field)


def test_initial_weights_are_bit_identical_to_the_job_alone() -> None:
    spec = seeds(TECHNIQUES["cnn-batch-norm-dropout"], count=1, epochs=1)[0]
    alone = Trainer(spec, None, []).model.state_dict()
    results, _ = grouped([spec, spec.model_copy(update={"training": spec.training.model_copy()})])
    assert results[0].status == "succeeded"
    # a group of one built again from the same spec draws exactly the same initial weights
    again = Trainer(spec, None, []).model.state_dict()
    assert all(torch.equal(alone[k], again[k]) for k in alone)


def test_replicas_stop_early_on_their_own_and_their_records_end_there() -> None:
    stopping = {
        "optimizer": {"name": "sgd", "learning_rate": 2.0},
        "generalization": {"early_stopping": {"patience": 1, "monitor": "val_loss"}},
    }
    specs = seeds(stopping, count=3, epochs=15)
    results, records = grouped(specs)
    for spec, result, replica in zip(specs, results, records, strict=True):
        alone, solo = run_fit(spec)
        assert result.epochs_run == alone.epochs_run == len(replica) == len(solo)
        assert result.stop_reason == alone.stop_reason
        assert result.best_epoch == alone.best_epoch
    assert any(result.stopped_early for result in results)


def test_best_and_last_checkpoints_hold_their_own_epochs(tmp_path: Path) -> None:
    # `last` of an epoch that was the best is written as a link to `best`; later epochs part them
    specs = seeds({"optimizer": {"name": "sgd", "learning_rate": 2.0}}, count=2, epochs=6)
    folders = [tmp_path / str(i) for i in range(2)]
    results, _ = grouped(specs, folders)
    for folder, result in zip(folders, results, strict=True):
        checkpoints = folder / "checkpoints"
        assert read_checkpoint(checkpoints / "last.safetensors")[1]["epoch"] == 6
        assert read_checkpoint(checkpoints / "best.safetensors")[1]["epoch"] == result.best_epoch
    assert any(result.best_epoch != 6 for result in results)


def test_plateau_schedules_move_each_replica_on_its_own() -> None:
    schedule = {"type": "plateau", "patience": 0}
    plateau = {"optimizer": {"name": "sgd", "learning_rate": 1.0, "schedule": schedule}}
    specs = seeds(plateau, count=3, epochs=6)
    _, records = grouped(specs)
    rates = [[r["learning_rate"] for r in replica] for replica in records]
    assert len({tuple(r) for r in rates}) > 1, "the replicas' learning rates should part ways"
    for spec, replica, own in zip(specs, records, rates, strict=True):
        solo = run_fit(spec)[1]
        assert own == [r["learning_rate"] for r in solo]
        assert [r["val_loss"] for r in replica] == pytest.approx([r["val_loss"] for r in solo], rel=1e-4)


def test_a_schedule_that_moves_every_replica_alike_moves_their_stacked_step_too() -> None:
    # the stack (and its optimizer's kernel calls) lasts from epoch to epoch only while the rates stay
    decay = {"optimizer": {"name": "adam", "schedule": {"type": "step", "step_size": 1, "gamma": 0.3}}}
    specs = seeds(decay, count=2, epochs=4)
    _, records = grouped(specs)
    for spec, replica in zip(specs, records, strict=True):
        solo = run_fit(spec)[1]
        assert [r["learning_rate"] for r in replica] == [r["learning_rate"] for r in solo]
        assert [r["val_loss"] for r in replica] == pytest.approx([r["val_loss"] for r in solo], rel=1e-4)


def test_a_diverging_replica_fails_alone() -> None:
    raw = {"dataset": {"name": "diabetes"}, "normalization": {"inputs": "none"}}
    calm, wild = seeds(raw, count=2, epochs=2)
    steep = {**wild.model_dump(mode="json"), "optimizer": {"name": "sgd", "learning_rate": 10}}
    results, records = grouped([calm, JobSpec.model_validate(steep)])
    assert results[0].status == "succeeded" and len(records[0]) == 2
    assert results[1].status == "failed"
    assert results[1].error is not None and "the training loss became" in results[1].error


def test_cancelling_one_replica_drops_it_and_the_rest_go_on() -> None:
    specs = seeds({}, count=2, epochs=3)
    stopper = Recorder(stop_after=1)
    keeper = Recorder()
    results = fit_group(specs, None, [[stopper], [keeper]])
    assert results[0].status == "cancelled" and len(stopper.records) == 1
    assert results[1].status == "succeeded" and len(keeper.records) == 3
    _, solo = run_fit(specs[1])
    losses = [r["train_loss"] for r in keeper.records]
    assert losses == pytest.approx([r["train_loss"] for r in solo], rel=1e-5)


RESUMED = {
    "adam-batch-norm-dropout": {"generalization": {"dropout": 0.2}, "normalization": {"layers": "batch"}},
    "momentum-layer-norm": {**TECHNIQUES["momentum"], "normalization": {"layers": "layer"}},
    "rmsprop": TECHNIQUES["rmsprop"],
    "adagrad": TECHNIQUES["adagrad"],
    "adamw-cnn": {**TECHNIQUES["adamw"], **IMAGES, "network": CNN},
}


@pytest.mark.parametrize("technique", list(RESUMED))
def test_a_resumed_group_continues_bit_identically(tmp_path: Path, technique: str) -> None:
    config = RESUMED[technique]
    whole = [tmp_path / f"whole-{i}" for i in range(2)]
    parts = [tmp_path / f"parts-{i}" for i in range(2)]
    fit_group(seeds(config, epochs=4), whole)
    fit_group(seeds(config, epochs=2), parts)
    results, _ = grouped(seeds(config, epochs=4), parts, resume=True)
    assert [r.epochs_run for r in results] == [4, 4]
    for a, b in zip(whole, parts, strict=True):
        left = prefixed(read_checkpoint(a / "checkpoints" / "last.safetensors")[0], "model.")
        right = prefixed(read_checkpoint(b / "checkpoints" / "last.safetensors")[0], "model.")
        assert all(torch.equal(left[k], right[k]) for k in left)
        lines = [(folder / "metrics.jsonl").read_text().count("\n") for folder in (a, b)]
        assert lines == [4, 4]


def test_every_replica_keeps_its_own_optimizer_state(tmp_path: Path) -> None:
    # plateau schedules part the replicas' rates: they step stacked, then side by side
    schedule = {"type": "plateau", "patience": 0}
    specs = seeds({"optimizer": {"name": "adam", "learning_rate": 0.5, "schedule": schedule}}, 3, epochs=4)
    folders = [tmp_path / str(i) for i in range(3)]
    _, records = grouped(specs, folders)
    assert len({tuple(r["learning_rate"] for r in replica) for replica in records}) > 1
    steps = Trainer(specs[0], None, []).steps_per_epoch() * 4
    for folder in folders:
        tensors, _ = read_checkpoint(folder / "checkpoints" / "last.safetensors")
        counters = [t.item() for name, t in tensors.items() if name.endswith(".step")]
        assert counters and all(c == steps for c in counters)


def test_batch_norm_parameters_keep_their_optimizer_state_from_epoch_to_epoch(tmp_path: Path) -> None:
    # batch norm's own parameters step side by side, not stacked: their Adam state is still the replica's
    specs = seeds({"normalization": {"layers": "batch"}}, 2, epochs=3)
    folders = [tmp_path / str(i) for i in range(2)]
    grouped(specs, folders)
    run_fit(specs[0], tmp_path / "alone")
    steps = Trainer(specs[0], None, []).steps_per_epoch() * 3
    for folder in (folders[0], tmp_path / "alone"):
        tensors, _ = read_checkpoint(folder / "checkpoints" / "last.safetensors")
        counters = [t.item() for name, t in tensors.items() if name.endswith(".step")]
        assert len(counters) == len(list(Trainer(specs[0], None, []).model.parameters()))
        assert all(c == steps for c in counters)


def test_over_five_seeds_grouped_and_alone_agree_within_seed_noise() -> None:
    config = {"generalization": {"dropout": 0.2}, "normalization": {"layers": "batch"}}
    specs = seeds(config, count=5, epochs=8)
    together = [r.final.val_loss for r in grouped(specs)[0] if r.final]
    alone = [r.final.val_loss for r in (run_fit(s)[0] for s in specs) if r.final]
    noise = statistics.stdev(alone)
    assert abs(statistics.mean(together) - statistics.mean(alone)) < noise / len(alone) ** 0.5
    assert all(relative(a, b) < 0.02 for a, b in zip(together, alone, strict=True))


def test_recurrent_networks_run_one_by_one_as_alone() -> None:
    config = {"dataset": {"name": "parity", "samples": 64, "length": 4}, "network": {"type": "rnn"}}
    specs = [
        JobSpec.model_validate(
            {**make_spec().model_dump(mode="json"), **config, "training": {"seed": s, "epochs": 2}}
        )
        for s in range(2)
    ]
    results, records = grouped(specs)
    assert replica_key(specs[0]) is None
    timing = {"seconds", "samples_per_second"}
    for spec, replica in zip(specs, records, strict=True):
        alone = run_fit(spec)[1]
        assert [{k: v for k, v in r.items() if k not in timing} for r in replica] == [
            {k: v for k, v in r.items() if k not in timing} for r in alone
        ]
    assert all(r.status == "succeeded" for r in results)


def test_replica_key_groups_what_may_differ_within_a_group() -> None:
    base = make_spec()
    faster = make_spec(training={"seed": 7}, optimizer={"name": "adam", "learning_rate": 0.1})
    assert replica_key(base) == replica_key(faster)
    assert replica_key(base) == replica_key(make_spec(generalization={"l2": 0.1}, initialization="he_normal"))
    assert replica_key(base) != replica_key(make_spec(network={"hidden_layers": [9]}))
    assert replica_key(base) != replica_key(make_spec(training={"batch_size": 8}))
