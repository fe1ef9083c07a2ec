"""training.precision: bfloat16 autocast trains; a device without bfloat16 is refused in words."""

from __future__ import annotations

import pytest
import torch

from tests.training.conftest import make_spec, run_fit
from training.device import JobFailure, precision_context
from training.spec import Precision


def test_bf16_trains_to_about_the_loss_of_float32() -> None:
    low, records = run_fit(make_spec(training={"precision": "bf16", "epochs": 5}))
    full, _ = run_fit(make_spec(training={"epochs": 5}))
    assert low.status == "succeeded" and low.final and full.final
    assert low.final.val_loss == pytest.approx(full.final.val_loss, rel=0.1)
    assert records[0]["train_loss"] != records[-1]["train_loss"]


def test_float32_is_the_default_and_adds_nothing() -> None:
    assert make_spec().training.precision == Precision.float32
    with precision_context(Precision.float32, torch.device("cpu"))():
        assert not torch.is_autocast_enabled("cpu")


def test_a_gpu_without_bfloat16_is_refused_with_what_to_do(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda: False)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda device=None: "Tesla V100")
    with pytest.raises(JobFailure, match=r'Tesla V100 has none: use "32"'):
        precision_context(Precision.bf16, torch.device("cuda"))
