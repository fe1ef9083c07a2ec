"""The worker's Celery app with each epoch's validation made TRAINCTL_TEST_VALIDATION_SLEEP seconds longer.

A test-only app: it gives a job a long phase between steps (as a 9M-parameter validation would) on a
tiny network.
"""

from __future__ import annotations

import os
import time
from typing import Any

from training.loop import Trainer
from worker.celery_app import celery_app

__all__ = ["celery_app"]

_SLEEP_S = float(os.environ.get("TRAINCTL_TEST_VALIDATION_SLEEP", "0"))
_evaluate = Trainer.evaluate


def _slow_evaluate(self: Trainer, X: Any, y: Any, **options: Any) -> Any:
    if X is self.data.X_val:
        time.sleep(_SLEEP_S)
    return _evaluate(self, X, y, **options)


Trainer.evaluate = _slow_evaluate  # type: ignore[method-assign]
