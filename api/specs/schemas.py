"""Request and response shapes of spec validation."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from training.spec import EXAMPLE_SPEC, JobSpec, SpecWarning


class SpecValidationRequest(BaseModel):
    """A spec to check."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{"spec": EXAMPLE_SPEC}]})

    spec: JobSpec


class SpecReport(BaseModel):
    """What the service makes of a spec, without running it."""

    spec: JobSpec = Field(description="The spec with every default filled in and aliases resolved.")
    warnings: list[SpecWarning] = Field(description="Legal but doubtful choices, with advice.")
    parameters: int | None = Field(description="Trainable parameters; null when the data shape is unknown.")
    features: int | None = Field(description="Input features of the dataset, when known.")
    outputs: int | None = Field(description="Network outputs (classes, or regression targets), when known.")
    peak_memory_bytes: int | None = Field(
        None,
        description="Estimated peak memory of the job (data, network, optimizer, activations at the batch "
        "size); submissions over TRAINCTL_MAX_JOB_MEMORY are refused.",
    )
