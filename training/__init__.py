"""trainctl's training engine: JobSpec in, trained network, metrics and checkpoints out.

Only `training.spec` and `training.records` are imported eagerly: the service imports this package
without paying for torch.
"""

from typing import TYPE_CHECKING, Any

from training.records import EpochRecord, LayerDiagnostics, RunResult
from training.spec import JobSpec, SpecWarning, lint

if TYPE_CHECKING:
    from training.callbacks import Callback, CheckpointInfo
    from training.checkpoint import TrainedModel, load_model
    from training.device import warm_up
    from training.loop import fit

__all__ = [
    "Callback",
    "CheckpointInfo",
    "EpochRecord",
    "JobSpec",
    "LayerDiagnostics",
    "RunResult",
    "SpecWarning",
    "TrainedModel",
    "fit",
    "lint",
    "load_model",
    "warm_up",
]

_LAZY = {
    "fit": "training.loop",
    "Callback": "training.callbacks",
    "CheckpointInfo": "training.callbacks",
    "warm_up": "training.device",
    "load_model": "training.checkpoint",
    "TrainedModel": "training.checkpoint",
}


def __getattr__(name: str) -> Any:
    """Import torch-backed names on first use."""
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'training' has no attribute {name!r}")
