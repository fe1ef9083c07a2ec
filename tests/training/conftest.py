"""Helpers for the training engine tests: tiny specs, a recording callback, fit with its records."""

from __future__ import annotations

import copy
from collections.abc import Iterator
from typing import Any

import pytest

from training.callbacks import Callback
from training.records import EpochRecord
from training.spec import JobSpec

TINY: dict[str, Any] = {
    "dataset": {"name": "iris"},
    "network": {"type": "mlp", "hidden_layers": [8]},
    "training": {"epochs": 3, "batch_size": 16, "seed": 0, "device": "cpu"},
}


def merge(base: dict[str, Any], overrides: dict[str, Any]) -> dict[str, Any]:
    """Deep-merge overrides into a copy of base (dicts merge, everything else replaces)."""
    merged = copy.deepcopy(base)
    for key, value in overrides.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = merge(merged[key], value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged


def make_spec(**overrides: Any) -> JobSpec:
    """A tiny iris spec on the CPU with the given top-level sections merged in."""
    return JobSpec.model_validate(merge(TINY, overrides))


class Recorder(Callback):
    """A callback that keeps every epoch record (as stored JSON) and can cancel after a number of epochs."""

    def __init__(self, stop_after: int | None = None) -> None:
        self.records: list[dict[str, Any]] = []
        self.checkpoints: list[Any] = []
        self.stop_after = stop_after

    def on_epoch_end(self, record: EpochRecord) -> None:
        """Keep the record's JSON form (what metrics.jsonl and the database hold)."""
        self.records.append(record.model_dump(mode="json"))

    def on_checkpoint(self, info: Any) -> None:
        """Keep the checkpoint info."""
        self.checkpoints.append(info)

    def should_stop(self) -> bool:
        """Cancel once stop_after epochs have been recorded."""
        return self.stop_after is not None and len(self.records) >= self.stop_after


def run_fit(spec: JobSpec, out_dir: Any = None, **kwargs: Any) -> tuple[Any, list[dict[str, Any]]]:
    """fit() with a Recorder; returns the result and the epoch records."""
    from training.loop import fit

    recorder = Recorder()
    result = fit(spec, out_dir, callbacks=[recorder], **kwargs)
    return result, recorder.records


@pytest.fixture(autouse=True)
def single_torch_thread() -> Iterator[None]:
    """Run each training test on one torch thread: tiny networks gain nothing from more, and on a
    shared 2-core machine spinning intra-op threads made the suite several times slower."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
