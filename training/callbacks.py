"""What fit() tells the outside world while it trains, and what it returns."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any


class Callback:
    """Hooks fit() calls; subclass and override what you need (the defaults do nothing)."""

    def on_epoch_end(self, record: dict[str, Any]) -> None:
        """Receive one epoch's metrics record (the same object written to metrics.jsonl)."""

    def on_checkpoint(self, info: CheckpointInfo) -> None:
        """Learn that a checkpoint file was written (or overwritten)."""

    def should_stop(self) -> bool:
        """Polled between steps: return True to cancel the run (it ends 'cancelled' after a checkpoint)."""
        return False


@dataclass(frozen=True)
class CheckpointInfo:
    """A checkpoint file fit() wrote: `last`, `best`, or `epoch-0005` style names."""

    name: str
    path: Path
    epoch: int


@dataclass
class Result:
    """The outcome of fit(), written as result.json."""

    status: str  # succeeded | failed | cancelled
    epochs_run: int = 0
    stopped_early: bool = False
    stop_reason: str | None = None
    best_epoch: int | None = None
    best: dict[str, Any] | None = None
    final: dict[str, Any] | None = None
    test: dict[str, Any] | None = None
    parameters: int = 0
    seconds: float = 0.0
    device: str = "cpu"
    torch_version: str = ""
    warnings: list[str] = field(default_factory=list)
    error: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        return asdict(self)
