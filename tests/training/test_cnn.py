"""Convolutional networks: digits as images, parameter counts, the cnn spec contract, lint, predict."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from pydantic import ValidationError
from sklearn.datasets import load_digits
from torch import nn

from tests.training.conftest import merge, run_fit
from training.checkpoint import load_model
from training.data import prepare
from training.loop import fit
from training.network import CNN, build_network
from training.spec import DIGITS_IMAGE, BuiltinDatasetSpec, InputScaling, JobSpec, count_parameters

SMALL: dict[str, Any] = {
    "dataset": {"name": "digits", "as_images": True},
    "network": {"type": "cnn", "channels": [4, 8], "kernel_size": 3, "pool": "max", "hidden_layers": [16]},
    "optimizer": {"name": "adam", "learning_rate": 0.003},
    "training": {"epochs": 2, "batch_size": 64, "seed": 0, "device": "cpu", "diagnostics_every": 5},
}


def cnn_spec(**overrides: Any) -> JobSpec:
    """A small cnn on digits images, on the CPU."""
    return JobSpec.model_validate(merge(SMALL, overrides))


def with_dataset(dataset: dict[str, Any], **overrides: Any) -> JobSpec:
    """The small cnn spec on another dataset."""
    base = {k: v for k, v in SMALL.items() if k != "dataset"}
    return JobSpec.model_validate(merge(base, {"dataset": dataset, **overrides}))


def test_digits_as_images_are_1x8x8_scaled_per_pixel() -> None:
    cpu = torch.device("cpu")
    images = prepare(BuiltinDatasetSpec(name="digits", as_images=True), InputScaling.zscore, 0, cpu)
    table = prepare(BuiltinDatasetSpec(name="digits"), InputScaling.zscore, 0, cpu)
    assert images.input_shape == DIGITS_IMAGE and images.X_train.shape[1:] == (1, 8, 8)
    # the same pixels and the same per-pixel scaling as the flat table, only reshaped
    assert torch.equal(images.X_train.reshape(len(images.X_train), -1), table.X_train)


def test_cnn_trains_on_digits_images() -> None:
    result, records = run_fit(cnn_spec(optimizer={"learning_rate": 0.01}, training={"epochs": 4}))
    assert result.status == "succeeded"
    assert result.test is not None and result.test["test_accuracy"] > 0.75, result.test  # chance: 0.1
    assert records[-1]["train_loss"] < records[0]["train_loss"] / 2
    assert [g["name"] for g in records[0]["layers"]] == ["conv1", "conv2", "hidden1", "output"]
    conv1 = records[0]["layers"][0]
    assert conv1["grad_norm"] > 0 and conv1["dead_fraction"] is not None  # relu: dead channels tracked


@pytest.mark.parametrize("pool", ["max", "avg", "none"])
@pytest.mark.parametrize("norm", ["none", "batch", "layer"])
@pytest.mark.parametrize("hidden", [[], [16]], ids=["no-hidden", "hidden"])
def test_parameter_count_matches_count_parameters(pool: str, norm: str, hidden: list[int]) -> None:
    spec = cnn_spec(
        network={"pool": pool, "hidden_layers": hidden, "kernel_size": 5}, normalization={"layers": norm}
    )
    model = build_network(spec, DIGITS_IMAGE, 10)
    counted = count_parameters(spec, input_shape=DIGITS_IMAGE, outputs=10)
    assert counted == sum(p.numel() for p in model.parameters())
    assert model(torch.randn(3, *DIGITS_IMAGE)).shape == (3, 10)


def test_batch_norm_is_batchnorm2d_after_convolutions_and_layer_norm_normalizes_each_example() -> None:
    batch = build_network(cnn_spec(normalization={"layers": "batch"}), DIGITS_IMAGE, 10)
    assert isinstance(batch, CNN)
    assert all(isinstance(norm, nn.BatchNorm2d) for norm in batch.norms)
    layer = build_network(cnn_spec(normalization={"layers": "layer"}), DIGITS_IMAGE, 10)
    assert isinstance(layer, CNN)
    layer.eval()
    x = torch.randn(5, *DIGITS_IMAGE)
    assert torch.allclose(layer(x)[:1], layer(x[:1]), atol=1e-6)  # independent of the batch


def test_similar_parameter_counts_of_the_cnn_and_mlp_examples() -> None:
    examples = Path(__file__).resolve().parents[2] / "examples" / "specs"
    cnn = JobSpec.model_validate_json((examples / "cnn-digits.json").read_text())
    mlp = JobSpec.model_validate_json((examples / "mlp-digits-similar-params.json").read_text())
    cnn_count = count_parameters(cnn, input_shape=DIGITS_IMAGE, outputs=10)
    mlp_count = count_parameters(mlp, input_shape=(64,), outputs=10)
    assert (cnn_count, mlp_count) == (13_706, 13_510)
    assert cnn.training == mlp.training and cnn.optimizer == mlp.optimizer


def test_cnn_on_a_table_is_rejected_with_a_hint() -> None:
    with pytest.raises(ValidationError, match="as_images"):
        cnn_spec(dataset={"as_images": False})
    with pytest.raises(ValidationError, match="image or sequence dataset"):
        with_dataset({"name": "iris"})
    with pytest.raises(ValidationError, match="as_sequence"):
        with_dataset({"name": "mnist1d"})


def test_as_images_only_for_digits() -> None:
    with pytest.raises(ValidationError, match="digits only"):
        with_dataset({"name": "iris", "as_images": True})


def test_cnn_on_a_table_file_fails_with_a_reason(tmp_path: Path) -> None:
    path = tmp_path / "table.npz"
    np.savez(path, X=np.zeros((40, 64), dtype=np.float32), y=np.arange(40) % 2)
    spec = with_dataset({"path": str(path)})  # valid: the file's kind is unknown until it is read
    result = fit(spec)
    assert result.status == "failed" and "images" in (result.error or "")


def test_load_model_predicts_flat_64_pixel_rows_and_images(tmp_path: Path) -> None:
    result = fit(cnn_spec(), tmp_path)
    assert result.status == "succeeded"
    model = load_model(tmp_path / "checkpoints" / "last.safetensors")
    digits = load_digits()
    flat = model.predict(digits.data[:5])
    images = model.predict(digits.data[:5].reshape(5, 1, 8, 8))
    assert flat == images and len(flat["classes"]) == 5
    with pytest.raises(ValueError, match=r"\(rows, 1, 8, 8\)"):
        model.predict(digits.data[:5, :32])
