"""Limits, the example spec and SpecModel, the base of every spec model."""

from __future__ import annotations

from difflib import get_close_matches
from typing import Any

from pydantic import (
    BaseModel,
    ConfigDict,
    ModelWrapValidatorHandler,
    ValidationError,
    model_validator,
)
from pydantic_core import InitErrorDetails, PydanticCustomError, PydanticUndefined, to_jsonable_python

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

    @model_validator(mode="wrap")
    @classmethod
    def _no_unknown_keys(cls, data: Any, handler: ModelWrapValidatorHandler[Any]) -> Any:
        # Unknown keys are reported together with every other problem of the object, not instead of them.
        if not isinstance(data, dict) or all(key in cls.model_fields for key in data):
            return handler(data)
        valid = list(cls.model_fields)
        hints = [
            f"'{key}' (did you mean '{close[0]}'?)"
            if (close := get_close_matches(str(key), valid, 1))
            else f"'{key}'"
            for key in data
            if key not in cls.model_fields
        ]
        message = f"unknown key {', '.join(hints)}; valid keys: {', '.join(valid)}"
        problems: list[InitErrorDetails] = [
            {"type": PydanticCustomError("unknown_key", message), "loc": (), "input": data}
        ]
        try:
            handler({key: value for key, value in data.items() if key in cls.model_fields})
        except ValidationError as error:
            problems += [
                {
                    "type": PydanticCustomError(str(e["type"]), "{message}", {"message": e["msg"]}),
                    "loc": e["loc"],
                    "input": e.get("input"),
                }
                for e in error.errors()
            ]
        raise ValidationError.from_exception_data(cls.__name__, problems)
