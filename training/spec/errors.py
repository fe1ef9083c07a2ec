"""Validation errors as field paths and sentences a person can act on."""

from __future__ import annotations

from typing import Any

from pydantic import (
    BaseModel,
)

from training.spec.optimizer import OPTIMIZER_NAMES

# Segments pydantic adds to an error location for union members; a person thinks in field paths.
_UNION_TAGS = frozenset(
    {
        "builtin",
        "synthetic",
        "sequence",
        "mlp",
        "rnn",
        "cnn",
        "file",
        "upload",
        "norm",
        "value",
        "normal",
        "uniform",
        "step",
        "cosine",
        "plateau",
        *OPTIMIZER_NAMES,
    }
)


class FieldError(BaseModel):
    """One validation problem: the dotted field path and what is wrong."""

    field: str
    message: str


def describe_errors(errors: list[Any]) -> list[FieldError]:
    """Turn pydantic's error list into field paths and sentences, one per distinct problem."""
    seen: dict[str, FieldError] = {}
    for error in errors:
        parts = [
            str(part)
            for part in error.get("loc", ())
            if not (isinstance(part, str) and (part in _UNION_TAGS or "[" in part))
        ]
        field = ".".join(parts) or "spec"
        message = str(error.get("msg", "invalid value")).removeprefix("Value error, ")
        seen.setdefault(f"{field}: {message}", FieldError(field=field, message=message))
    return list(seen.values())
