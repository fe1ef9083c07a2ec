"""Limits, the example spec and SpecModel, the base of every spec model."""

from __future__ import annotations

from difflib import get_close_matches
from typing import Any

from pydantic import (
    BaseModel,
    ConfigDict,
    model_validator,
)
from pydantic_core import PydanticUndefined, to_jsonable_python

# Hard ceilings that keep a typo (10^9 epochs, a 10^6-wide layer) from ever reaching a worker.
# The service applies its own, configurable and usually tighter, limits on top.
MAX_EPOCHS = 100_000
MAX_LAYER_WIDTH = 65_536
MAX_HIDDEN_LAYERS = 64
MAX_SAMPLES = 1_000_000


EXAMPLE_SPEC: dict[str, Any] = {
    "dataset": {"name": "iris", "validation_fraction": 0.2, "test_fraction": 0.2},
    "network": {"type": "mlp", "hidden_layers": [16]},
    "activation": "relu",
    "initialization": "xavier_uniform",
    "normalization": {"inputs": "zscore", "layers": "none"},
    "optimizer": {"name": "adam", "learning_rate": 0.01},
    "generalization": {"early_stopping": {"patience": 10}},
    "training": {"epochs": 30, "batch_size": 16, "seed": 0},
}


def _examples_from_defaults(schema: dict[str, Any], model: type[BaseModel]) -> None:
    """Give every documented property an example: its default, or the example spec's value."""
    for name, prop in schema.get("properties", {}).items():
        field = model.model_fields.get(name)
        if field is None:
            continue
        if "description" not in prop and isinstance(field.default, str):  # a union's selector key
            prop["description"] = f"Selects {model.__name__}: {(model.__doc__ or '').strip()}"
        if "examples" in prop:
            continue
        if field.default_factory is not None:
            value = field.default_factory()  # type: ignore[call-arg]
        elif field.default is not PydanticUndefined and field.default is not None:
            value = field.default
        elif name in EXAMPLE_SPEC and model.__name__ == "JobSpec":
            value = EXAMPLE_SPEC[name]
        else:
            continue
        prop["examples"] = [to_jsonable_python(value)]
    if model.__name__ == "JobSpec":
        schema["examples"] = [EXAMPLE_SPEC]


class SpecModel(BaseModel):
    """Base of every spec model: unknown keys are errors that list the valid ones."""

    model_config = ConfigDict(
        extra="forbid", validate_default=True, json_schema_extra=_examples_from_defaults
    )

    @model_validator(mode="before")
    @classmethod
    def _no_unknown_keys(cls, data: Any) -> Any:
        if isinstance(data, dict):
            valid = list(cls.model_fields)
            unknown = [key for key in data if key not in cls.model_fields]
            if unknown:
                hints = [
                    f"'{key}' (did you mean '{close[0]}'?)"
                    if (close := get_close_matches(str(key), valid, 1))
                    else f"'{key}'"
                    for key in unknown
                ]
                raise ValueError(f"unknown key {', '.join(hints)}; valid keys: {', '.join(valid)}")
        return data
