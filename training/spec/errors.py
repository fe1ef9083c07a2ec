"""Validation errors as field paths and sentences a person can act on."""

from __future__ import annotations

from typing import Any

from pydantic import (
    BaseModel,
)

from training.spec.job import JobSpec


def _union_tags(schema: Any) -> set[str]:
    """Every tag of every discriminated union in a pydantic core schema (the names the spec declares)."""
    tags: set[str] = set()
    if isinstance(schema, dict):
        if schema.get("type") == "tagged-union":
            tags.update(str(tag) for tag in schema["choices"])
        for value in schema.values():
            tags |= _union_tags(value)
    elif isinstance(schema, list | tuple):
        for value in schema:
            tags |= _union_tags(value)
    return tags


# Segments pydantic adds to an error location for union members; a person thinks in field paths.
_UNION_TAGS = frozenset(_union_tags(JobSpec.__pydantic_core_schema__))


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
