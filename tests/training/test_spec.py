"""The JobSpec contract: defaults, aliases, errors, unions, lint and parameter counts."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from tests.training.conftest import TINY, make_spec, merge
from training.spec import (
    SGD,
    Activation,
    Adagrad,
    Adam,
    AdamW,
    BuiltinDatasetSpec,
    CNNNetwork,
    CosineSchedule,
    InitName,
    JobSpec,
    MLPNetwork,
    Momentum,
    Nesterov,
    NormalInit,
    NormClipping,
    PlateauSchedule,
    RMSprop,
    RNNNetwork,
    StepSchedule,
    UniformInit,
    ValueClipping,
    count_parameters,
    describe_errors,
    lint,
    network_misfit,
)

MINIMAL = {"dataset": {"name": "digits"}, "network": {"hidden_layers": [16]}}


def errors_of(raw: dict[str, Any]) -> list[tuple[str, str]]:
    """Validate raw and return (field, message) pairs of the errors."""
    with pytest.raises(ValidationError) as caught:
        JobSpec.model_validate(raw)
    return [(e.field, e.message) for e in describe_errors(caught.value.errors())]


def codes(raw_overrides: dict[str, Any]) -> set[str]:
    """Lint codes of the tiny spec with overrides merged in (a network given replaces the tiny one)."""
    raw = merge(TINY, raw_overrides)
    if "network" in raw_overrides:
        raw["network"] = raw_overrides["network"]
    return {w.code for w in lint(JobSpec.model_validate(raw))}


def test_defaults_are_the_documented_ones() -> None:
    spec = JobSpec.model_validate(MINIMAL)
    assert spec.activation == "relu"
    assert spec.initialization == "xavier_uniform"
    assert spec.normalization.inputs == "zscore"
    assert spec.normalization.layers == "none"
    assert spec.normalization.momentum == 0.1 and spec.normalization.epsilon == 1e-5
    assert isinstance(spec.optimizer, Adam) and spec.optimizer.learning_rate == 0.001
    assert spec.optimizer.schedule is None
    assert spec.clipping is None
    assert spec.generalization.early_stopping is None
    assert spec.generalization.l2 == 0.0 and spec.generalization.dropout == 0.0
    assert (spec.training.epochs, spec.training.batch_size, spec.training.seed) == (20, 32, 0)
    assert spec.training.device == "auto"
    assert spec.dataset.validation_fraction == 0.2 and spec.dataset.test_fraction == 0.2


@pytest.mark.parametrize(
    ("alias", "canonical"),
    [("logsig", "sigmoid"), ("tansig", "tanh"), ("poslin", "relu"), ("purelin", "linear")],
)
def test_chapter_activation_aliases_normalize_to_canonical_names(alias: str, canonical: str) -> None:
    spec = JobSpec.model_validate({**MINIMAL, "activation": alias})
    assert spec.activation == Activation(canonical)
    assert spec.model_dump(mode="json")["activation"] == canonical


def test_unknown_key_lists_valid_keys_and_suggests_the_close_one() -> None:
    [(field, message)] = errors_of({**MINIMAL, "optimiser": {"name": "sgd"}})
    assert field == "spec"
    assert "did you mean 'optimizer'?" in message
    for key in ("dataset", "network", "activation", "initialization", "normalization", "training"):
        assert key in message


def test_unknown_nested_key_names_its_section_and_suggests() -> None:
    [(field, message)] = errors_of({**MINIMAL, "optimizer": {"name": "adam", "learning_rat": 0.1}})
    assert field == "optimizer"
    assert "did you mean 'learning_rate'?" in message and "betas" in message


@pytest.mark.parametrize(
    ("section", "value", "field", "allowed"),
    [
        ("activation", "softmax", "activation", "sigmoid, tanh, relu"),
        ("initialization", "glorot", "initialization", "xavier_uniform, xavier_normal, lecun_normal"),
        ("normalization", {"inputs": "l2"}, "normalization.inputs", "'none', 'minmax' or 'zscore'"),
        ("normalization", {"layers": "group"}, "normalization.layers", "'none', 'batch' or 'layer'"),
        ("training", {"loss": "hinge"}, "training.loss", "'auto', 'cross_entropy' or 'mse'"),
        (
            "generalization",
            {"early_stopping": {"monitor": "val_f1"}},
            "generalization.early_stopping.monitor",
            "'val_loss', 'val_accuracy'",
        ),
    ],
)
def test_enum_errors_name_the_field_and_what_is_allowed(
    section: str, value: Any, field: str, allowed: str
) -> None:
    [(error_field, message)] = errors_of({**MINIMAL, section: value})
    assert error_field == field
    assert allowed in message


def test_activation_error_lists_aliases_too() -> None:
    [(_, message)] = errors_of({**MINIMAL, "activation": "softmax"})
    assert "sigmoid" in message and "logsig" in message


def test_unknown_optimizer_names_the_field() -> None:
    [(field, message)] = errors_of({**MINIMAL, "optimizer": {"name": "lbfgs"}})
    assert field == "optimizer"
    assert "sgd" in message and "adam" in message


def test_out_of_range_value_names_the_nested_field() -> None:
    [(field, _)] = errors_of({**MINIMAL, "optimizer": {"name": "sgd", "learning_rate": -1}})
    assert field == "optimizer.learning_rate"


def test_initialization_union_accepts_names_and_objects() -> None:
    assert (
        JobSpec.model_validate({**MINIMAL, "initialization": "he_normal"}).initialization
        == InitName.he_normal
    )
    normal = JobSpec.model_validate(
        {**MINIMAL, "initialization": {"scheme": "normal", "std": 0.1}}
    ).initialization
    assert isinstance(normal, NormalInit) and normal.std == 0.1
    uniform = JobSpec.model_validate({**MINIMAL, "initialization": {"scheme": "uniform", "limit": 0.5}})
    assert isinstance(uniform.initialization, UniformInit) and uniform.initialization.limit == 0.5
    problems = errors_of({**MINIMAL, "initialization": {"scheme": "normal", "limit": 0.5}})
    assert {field for field, _ in problems} == {"initialization", "initialization.std"}  # both at once
    assert any("valid keys: scheme, std" in message for _, message in problems)


def test_clipping_union_is_picked_by_its_key() -> None:
    norm = JobSpec.model_validate({**MINIMAL, "clipping": {"max_norm": 1.0}}).clipping
    value = JobSpec.model_validate({**MINIMAL, "clipping": {"max_value": 0.5}}).clipping
    assert isinstance(norm, NormClipping) and norm.max_norm == 1.0
    assert isinstance(value, ValueClipping) and value.max_value == 0.5
    [(field, message)] = errors_of({**MINIMAL, "clipping": {"max_norm": 1.0, "max_value": 0.5}})
    assert field == "clipping" and "max_value" in message


@pytest.mark.parametrize(
    ("raw", "cls", "params"),
    [
        ({"name": "sgd", "learning_rate": 0.5}, SGD, {"learning_rate": 0.5}),
        ({"name": "momentum", "momentum": 0.8}, Momentum, {"momentum": 0.8, "learning_rate": 0.01}),
        ({"name": "nesterov"}, Nesterov, {"momentum": 0.9}),
        ({"name": "adam", "betas": [0.8, 0.9]}, Adam, {"betas": (0.8, 0.9), "eps": 1e-8}),
        ({"name": "adamw", "weight_decay": 0.1}, AdamW, {"weight_decay": 0.1}),
        ({"name": "rmsprop", "alpha": 0.9}, RMSprop, {"alpha": 0.9, "momentum": 0.0}),
        ({"name": "adagrad"}, Adagrad, {"learning_rate": 0.01, "eps": 1e-10}),
    ],
)
def test_optimizer_union_builds_each_optimizer_with_its_params(
    raw: dict[str, Any], cls: type, params: dict[str, Any]
) -> None:
    optimizer = JobSpec.model_validate({**MINIMAL, "optimizer": raw}).optimizer
    assert isinstance(optimizer, cls)
    for key, value in params.items():
        assert getattr(optimizer, key) == value


def test_optimizer_params_belong_to_their_optimizer() -> None:
    [(field, message)] = errors_of({**MINIMAL, "optimizer": {"name": "sgd", "momentum": 0.9}})
    assert field == "optimizer" and "momentum" in message


def test_schedule_union_is_picked_by_type() -> None:
    def schedule(raw: dict[str, Any]) -> Any:
        return JobSpec.model_validate(
            {**MINIMAL, "optimizer": {"name": "sgd", "schedule": raw}}
        ).optimizer.schedule

    assert isinstance(schedule({"type": "step", "step_size": 3}), StepSchedule)
    assert isinstance(schedule({"type": "cosine"}), CosineSchedule)
    plateau = schedule({"type": "plateau", "factor": 0.1})
    assert isinstance(plateau, PlateauSchedule) and plateau.factor == 0.1
    [(field, _)] = errors_of({**MINIMAL, "optimizer": {"name": "sgd", "schedule": {"type": "linear"}}})
    assert field.startswith("optimizer.schedule")


def test_dataset_kinds_are_told_apart() -> None:
    assert (
        JobSpec.model_validate({**MINIMAL, "dataset": {"name": "moons", "samples": 50}}).dataset.samples == 50
    )
    assert (
        JobSpec.model_validate({**MINIMAL, "dataset": {"path": "x.csv", "target": "y"}}).dataset.target == "y"
    )
    [(field, message)] = errors_of({**MINIMAL, "dataset": {"name": "mnist"}})
    assert field == "dataset" and "digits" in message and "moons" in message
    [(field, _)] = errors_of({**MINIMAL, "dataset": {"path": "x.parquet"}})
    assert field == "dataset.path"
    [(field, message)] = errors_of({**MINIMAL, "dataset": {"name": "digits", "samples": 10}})
    assert "samples" in message


@pytest.mark.parametrize("module", ["training.spec", "training"])
def test_importing_spec_and_package_does_not_import_torch(module: str) -> None:
    code = f"import sys, {module}; sys.exit(1 if 'torch' in sys.modules else 0)"
    completed = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert completed.returncode == 0, completed.stderr or f"importing {module} imported torch"


@pytest.mark.parametrize(
    "overrides",
    [
        {"network": {"hidden_layers": [16]}},
        {"network": {"hidden_layers": [7, 5, 3]}},
        {"network": {"hidden_layers": [32, 16]}, "normalization": {"layers": "batch"}},
        {"network": {"hidden_layers": [12, 9]}, "normalization": {"layers": "layer"}},
        {"network": {"hidden_layers": []}},
        {"network": {"hidden_layers": [10]}, "generalization": {"dropout": 0.3}},
    ],
)
def test_count_parameters_equals_the_torch_parameter_count(overrides: dict[str, Any]) -> None:
    from training.network import build_network

    spec = make_spec(**overrides)
    model = build_network(spec, 13, 4)
    assert count_parameters(spec, features=13, outputs=4) == sum(p.numel() for p in model.parameters())


@pytest.mark.parametrize(
    ("raw", "input_shape", "outputs"),
    [
        ({"type": "rnn", "cell": "lstm", "hidden_size": 7, "layers": 2, "bidirectional": True}, (50, 2), 1),
        ({"type": "rnn", "cell": "gru", "hidden_size": 5, "layers": 2}, (50, 2), 1),
        ({"type": "rnn", "cell": "rnn", "hidden_size": 6, "layers": 2, "bidirectional": True}, (50, 2), 1),
        ({"type": "cnn", "channels": [4, 8], "hidden_layers": [16]}, (1, 8, 8), 10),
        (
            {"type": "cnn", "channels": [4], "hidden_layers": [], "kernel_size": 5, "pool": "none"},
            (1, 8, 8),
            10,
        ),
    ],
    ids=["lstm-bidirectional", "gru", "rnn-bidirectional", "cnn-pooled", "cnn-unpooled"],
)
@pytest.mark.parametrize("layers", ["none", "layer"])
def test_count_parameters_equals_torch_count_for_rnn_and_cnn(
    raw: dict[str, Any], input_shape: tuple[int, ...], outputs: int, layers: str
) -> None:
    from training.network import build_network

    dataset = {"name": "digits", "as_images": True} if raw["type"] == "cnn" else {"name": "adding"}
    spec = JobSpec.model_validate({"dataset": dataset, "network": raw, "normalization": {"layers": layers}})
    model = build_network(spec, input_shape, outputs)
    image = input_shape if len(input_shape) == 3 else None
    counted = count_parameters(spec, features=input_shape[-1], outputs=outputs, image_shape=image)  # type: ignore[arg-type]
    assert counted == sum(p.numel() for p in model.parameters())


def test_every_activation_and_init_has_a_torch_entry() -> None:
    from training.network import ACTIVATIONS, WEIGHT_INITS

    assert set(ACTIVATIONS) == set(Activation)
    assert set(WEIGHT_INITS) == set(InitName)


LINT_CASES: list[tuple[str, dict[str, Any], dict[str, Any]]] = [
    (
        "dropout_with_batch_norm",
        {"generalization": {"dropout": 0.2}, "normalization": {"layers": "batch"}},
        {"generalization": {"dropout": 0.2}, "normalization": {"layers": "layer"}},
    ),
    ("zeros_initialization", {"initialization": "zeros"}, {"initialization": "xavier_normal"}),
    (
        "deep_sigmoid_without_normalization",
        {"activation": "sigmoid", "network": {"hidden_layers": [8] * 5}},
        {
            "activation": "sigmoid",
            "network": {"hidden_layers": [8] * 5},
            "normalization": {"layers": "batch"},
        },
    ),
    (
        "deep_sigmoid_without_normalization",
        {"activation": "tansig", "network": {"hidden_layers": [8] * 5}},
        {"activation": "tanh", "network": {"hidden_layers": [8] * 4}},
    ),
    (
        "he_with_sigmoid",
        {"activation": "tanh", "initialization": "he_uniform"},
        {"activation": "relu", "initialization": "he_uniform"},
    ),
    (
        "early_stopping_without_validation",
        {"dataset": {"validation_fraction": 0.0}, "generalization": {"early_stopping": {"patience": 2}}},
        {"dataset": {"validation_fraction": 0.2}, "generalization": {"early_stopping": {"patience": 2}}},
    ),
    (
        "patience_exceeds_epochs",
        {"generalization": {"early_stopping": {"patience": 3}}},
        {"generalization": {"early_stopping": {"patience": 2}}},
    ),
    (
        "batch_norm_small_batch",
        {"normalization": {"layers": "batch"}, "training": {"batch_size": 1}},
        {"normalization": {"layers": "batch"}, "training": {"batch_size": 2}},
    ),
    (
        "l2_with_weight_decay",
        {"optimizer": {"name": "adamw"}, "generalization": {"l2": 0.001}},
        {"optimizer": {"name": "adamw", "weight_decay": 0.0}, "generalization": {"l2": 0.001}},
    ),
    (
        "unscaled_inputs",
        {"dataset": {"name": "wine"}, "normalization": {"inputs": "none"}},
        {"dataset": {"name": "diabetes"}, "normalization": {"inputs": "none"}},
    ),
]


ADDING = {"name": "adding", "length": 100}
LINT_CASES += [
    (
        "rnn_long_sequence_without_clipping",
        {"dataset": ADDING, "network": {"type": "rnn"}, "activation": "tanh"},
        {"dataset": ADDING, "network": {"type": "rnn"}, "activation": "tanh", "clipping": {"max_norm": 1.0}},
    ),
    (
        "relu_rnn_without_clipping",
        {"dataset": {"name": "adding", "length": 20}, "network": {"type": "rnn"}, "activation": "relu"},
        {"dataset": {"name": "adding", "length": 20}, "network": {"type": "rnn"}, "activation": "tanh"},
    ),
    (
        "activation_ignored_by_cell",
        {"dataset": ADDING, "network": {"type": "rnn", "cell": "lstm"}, "activation": "sigmoid"},
        {"dataset": ADDING, "network": {"type": "rnn", "cell": "lstm"}, "activation": "tanh"},
    ),
]


@pytest.mark.parametrize(("code", "fires", "quiet"), LINT_CASES, ids=[c[0] for c in LINT_CASES])
def test_lint_code_fires_when_it_should_and_not_otherwise(
    code: str, fires: dict[str, Any], quiet: dict[str, Any]
) -> None:
    assert code in codes(fires)
    assert code not in codes(quiet)


def test_a_plain_spec_has_no_lint_warnings() -> None:
    assert codes({}) == set()


def test_lint_uses_the_feature_scale_it_is_given() -> None:
    spec = JobSpec.model_validate(
        {**MINIMAL, "dataset": {"path": "data.csv"}, "normalization": {"inputs": "none"}}
    )
    assert [w.code for w in lint(spec)] == []
    assert [w.code for w in lint(spec, feature_scale=500.0)] == ["unscaled_inputs"]
    assert all(w.message.endswith(".") for w in lint(spec, feature_scale=500.0))


def test_network_misfit_names_what_each_network_needs() -> None:
    cnn, rnn, mlp = CNNNetwork(), RNNNetwork(), MLPNetwork(hidden_layers=[4])
    assert "needs images" in (network_misfit(cnn, "table") or "")
    assert "as_images" in (network_misfit(cnn, "table", BuiltinDatasetSpec(name="digits")) or "")
    assert "needs sequences" in (network_misfit(rnn, "image") or "")
    assert [network_misfit(cnn, "image"), network_misfit(rnn, "sequence")] == [None, None]
    assert {network_misfit(mlp, kind) for kind in ("table", "sequence", "image")} == {None}


def test_every_lint_code_has_a_test_case() -> None:
    import importlib
    import re

    source = Path(importlib.import_module("training.spec.lint").__file__ or "").read_text()
    codes_in_source = set(re.findall(r'warn\(\s*"([a-z_]+)"', source))
    assert len(codes_in_source) >= 9
    # unstratified_split needs facts of the loaded data: tests/training/test_honest_metrics.py has it
    assert codes_in_source <= {case[0] for case in LINT_CASES} | {"unstratified_split"}


def test_every_spec_field_has_a_description_and_an_example() -> None:
    schema = JobSpec.model_json_schema()
    models = {"JobSpec": schema, **schema.get("$defs", {})}
    undocumented = [
        f"{model}.{name}"
        for model, definition in models.items()
        for name, prop in definition.get("properties", {}).items()
        if "description" not in prop or "examples" not in prop
    ]
    assert undocumented == []
    assert schema["examples"] and JobSpec.model_validate(schema["examples"][0])
