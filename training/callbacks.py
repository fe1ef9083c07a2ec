"""Callbacks: what fit() tells the outside world, and the stateful ones it drives itself.

Every callback may keep state across epochs; fit() saves `state_dict()` of each one in every
checkpoint and hands it back through `load_state_dict()` on resume, so a resumed run decides
exactly as the uninterrupted one would (as Lightning's callbacks do).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from training.records import EpochRecord, is_maximized
from training.spec import EarlyStopping
from training.tabular import DatasetError


class Callback:
    """Hooks fit() calls; subclass and override what you need (the defaults do nothing)."""

    def on_epoch_end(self, record: EpochRecord) -> None:
        """Receive one epoch's metrics record (the same record written to metrics.jsonl)."""

    def on_checkpoint(self, info: CheckpointInfo) -> None:
        """Learn that a checkpoint file was written (or overwritten)."""

    def should_stop(self) -> bool:
        """Polled between steps: True cancels the run (it ends 'cancelled'; a resume starts from `last`)."""
        return False

    @property
    def state_key(self) -> str:
        """The name this callback's state is saved under in a checkpoint."""
        return type(self).__qualname__

    def state_dict(self) -> dict[str, Any]:
        """JSON-ready state that a resumed run needs; empty for callbacks without any."""
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore what state_dict() returned."""


@dataclass(frozen=True)
class CheckpointInfo:
    """A checkpoint file fit() wrote: `last`, `best`, or `epoch-0005` style names."""

    name: str
    path: Path
    epoch: int


class EarlyStopper(Callback):
    """Tracks the best value of a metric; stops after `patience` epochs without improvement."""

    def __init__(self, monitor: str, patience: int | None, min_delta: float = 0.0) -> None:
        self.monitor = monitor
        self.maximize = is_maximized(monitor)
        self.patience = patience  # None: only track the best epoch, never stop
        self.min_delta = min_delta
        self.best: float | None = None
        self.best_epoch: int | None = None
        self.bad_epochs = 0
        self.improved = False  # whether the latest epoch was the new best

    @classmethod
    def from_spec(cls, stopping: EarlyStopping | None, has_validation: bool) -> EarlyStopper:
        """The spec's early stopping; without it, a tracker of the best val_loss that never stops."""
        monitor = stopping.monitor.value if stopping else "val_loss"
        if not has_validation and monitor.startswith("val_"):
            monitor = "train_" + monitor.removeprefix("val_")  # no validation split: watch training data
        if stopping is None:
            return cls(monitor, patience=None)
        return cls(monitor, patience=stopping.patience, min_delta=stopping.min_delta)

    def update(self, value: float, epoch: int) -> bool:
        """Record an epoch's value; True when it is the new best."""
        if self.best is None:
            improved = True
        elif self.maximize:
            improved = value > self.best + self.min_delta
        else:
            improved = value < self.best - self.min_delta
        if improved:
            self.best, self.best_epoch, self.bad_epochs = value, epoch, 0
        else:
            self.bad_epochs += 1
        return improved

    def on_epoch_end(self, record: EpochRecord) -> None:
        """Watch the monitored metric of the epoch."""
        value = getattr(record, self.monitor, None)
        if value is None:
            raise DatasetError(f"early stopping monitors {self.monitor}, which this task lacks")
        self.improved = self.update(value, record.epoch)

    @property
    def stopped(self) -> bool:
        """Patience ran out."""
        return self.patience is not None and self.bad_epochs >= self.patience

    @property
    def reason(self) -> str:
        """Why the run stopped, in words."""
        return (
            f"early stopping: {self.monitor} did not improve for {self.patience} epochs "
            f"after epoch {self.best_epoch}"
        )

    def state_dict(self) -> dict[str, Any]:
        """Best value, its epoch and the epochs since."""
        return {"best": self.best, "best_epoch": self.best_epoch, "bad_epochs": self.bad_epochs}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore from state_dict()."""
        self.best, self.best_epoch, self.bad_epochs = state["best"], state["best_epoch"], state["bad_epochs"]


class MetricsLog(Callback):
    """Appends each epoch's record to metrics.jsonl, one JSON object a line."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def start(self, epoch: int) -> None:
        """Keep the lines up to `epoch` (a resume), or none (a fresh run), so no epoch is written twice."""
        if epoch == 0:
            self.path.unlink(missing_ok=True)
        elif self.path.exists():
            kept = [line for line in self.path.read_text().splitlines() if json.loads(line)["epoch"] <= epoch]
            self.path.write_text("".join(line + "\n" for line in kept))

    def on_epoch_end(self, record: EpochRecord) -> None:
        """Append the record."""
        with self.path.open("a") as handle:
            handle.write(json.dumps(record.model_dump(mode="json")) + "\n")
