"""Reading a compare request: the target condition, the ranking mode and the curve fields."""

from __future__ import annotations

import operator
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

from api.errors import Unprocessable
from training.records import is_maximized

DEFAULT_FIELDS = ("train_loss", "val_loss")
FIELD_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,99}$")
_TARGET = re.compile(
    r"^\s*([A-Za-z_][A-Za-z0-9_]*)\s*(<=|>=|<|>)\s*([-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)\s*$"
)
_COMPARE_OPS: dict[str, Callable[[float, float], bool]] = {
    "<": operator.lt,
    "<=": operator.le,
    ">": operator.gt,
    ">=": operator.ge,
}

Mode = Literal["min", "max"]


@dataclass(frozen=True)
class Target:
    """A condition on one per-epoch field, e.g. val_loss < 0.3."""

    field: str
    op: str
    value: float

    def met(self, value: float) -> bool:
        """Whether `value` meets the condition."""
        return _COMPARE_OPS[self.op](value, self.value)

    def __str__(self) -> str:
        return f"{self.field}{self.op}{self.value:g}"


def parse_target(text: str) -> Target:
    """`val_loss<0.3`, `val_accuracy>=0.9`; 422 naming `target` otherwise."""
    match = _TARGET.match(text)
    if match is None:
        raise Unprocessable.for_field(
            "target", f"{text!r} is not a condition like val_loss<0.3 or val_accuracy>=0.9 (<, <=, >, >=)"
        )
    return Target(field=match[1], op=match[2], value=float(match[3]))


def default_mode(metric: str) -> Mode:
    """Accuracy is maximized; losses, rmse and anything else are minimized."""
    return "max" if is_maximized(metric) else "min"


def parse_fields(text: str | None) -> list[str]:
    """Curve fields from a comma-separated list (default train_loss,val_loss); 422 for odd names."""
    if not text:
        return list(DEFAULT_FIELDS)
    fields = list(dict.fromkeys(part.strip() for part in text.split(",") if part.strip()))
    for field in fields:
        if not FIELD_NAME.match(field) or field == "layers":
            raise Unprocessable.for_field("fields", f"{field!r} is not a per-epoch metric name like val_loss")
    if not fields or len(fields) > 20:
        raise Unprocessable.for_field("fields", "name between 1 and 20 per-epoch fields")
    return fields
