"""Legal specs at the edges train (or fail with a reason a person can act on), never with a raw error."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from tests.training.conftest import make_spec
from training.loop import fit


@pytest.mark.parametrize("fraction", ["validation_fraction", "test_fraction"])
def test_digits_images_with_an_empty_split_train(fraction: str) -> None:
    spec = make_spec(
        dataset={"name": "digits", "as_images": True, fraction: 0.0},
        network={"type": "cnn", "channels": [2], "hidden_layers": [4]},
        training={"epochs": 1, "batch_size": 256},
    )
    result = fit(spec)
    assert result.status == "succeeded", result.error
    assert result.epochs_run == 1
    assert (result.test is None) == (fraction == "test_fraction")


@pytest.mark.parametrize(
    ("damage", "says"),
    [
        (lambda data: data[: len(data) // 2], "damaged and cannot be read"),
        (lambda data: b"\x00" * len(data), "damaged and cannot be read"),
    ],
    ids=["truncated", "zeroed"],
)
def test_a_damaged_last_checkpoint_fails_the_resume_with_what_to_do(
    tmp_path: Path, damage: Callable[[bytes], bytes], says: str
) -> None:
    fit(make_spec(training={"epochs": 1}), tmp_path)
    last = tmp_path / "checkpoints" / "last.safetensors"
    last.write_bytes(damage(last.read_bytes()))
    result = fit(make_spec(training={"epochs": 2}), tmp_path, resume=True)
    assert result.status == "failed"
    assert result.error is not None and says in result.error and "start the run afresh" in result.error
    assert "SafetensorError" not in result.error
