"""Request and response shapes of the jobs API."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from api.schema_types import UtcDateTime
from core.models import JobStatus
from training.records import EpochRecord, RunResult
from training.spec import EXAMPLE_SPEC, JobSpec, SpecWarning
from training.tabular import ClassLabel

PRINTABLE = r"^[^\x00-\x1f\x7f]*$"  # no control characters: they break logs, CSV and PostgreSQL text
Tag = Annotated[
    str, StringConstraints(strip_whitespace=True, min_length=1, max_length=100, pattern=PRINTABLE)
]
MAX_TAGS = 20
MAX_PREDICT_ROWS = 10_000
MAX_NOTES = 10_000
Notes = Annotated[str, StringConstraints(max_length=MAX_NOTES, pattern=r"^[^\x00]*$")]


class JobCreate(BaseModel):
    """A job to run: an optional name and tags, and the spec."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"examples": [{"name": "iris-adam", "tags": ["demo"], "spec": EXAMPLE_SPEC}]},
    )

    name: str | None = Field(
        None, min_length=1, max_length=200, pattern=PRINTABLE, description="A label for people."
    )
    tags: list[Tag] = Field(default_factory=list, max_length=MAX_TAGS, description="Labels to filter by.")
    spec: JobSpec


class JobUpdate(BaseModel):
    """What PATCH changes: name, tags (the whole list) and notes; absent fields stay, null clears."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"examples": [{"tags": ["baseline", "keep"], "notes": "Adam at 1e-2 diverges."}]},
    )

    name: str | None = Field(
        None, min_length=1, max_length=200, pattern=PRINTABLE, description="A label for people."
    )
    tags: list[Tag] | None = Field(None, max_length=MAX_TAGS, description="The new tags (replace the old).")
    notes: Notes | None = Field(None, description=f"Free text for people (at most {MAX_NOTES} characters).")


class Progress(BaseModel):
    """How far training has come."""

    epoch: int = Field(description="Last finished epoch (0 before the first).")
    epochs: int = Field(description="Epochs asked for (early stopping may end sooner).")
    eta_seconds: float | None = Field(
        description="Estimated seconds left while running, from the mean epoch time."
    )


class JobSummary(BaseModel):
    """A job as listed."""

    id: str
    name: str | None
    tags: list[str]
    status: JobStatus
    progress: Progress
    result: RunResult | None = Field(description="Best, final and test metrics once finished.")
    error: str | None
    created_at: UtcDateTime
    started_at: UtcDateTime | None
    finished_at: UtcDateTime | None
    sweep_id: str | None = Field(None, description="The sweep that created this job, if any.")
    replica_group: str | None = Field(
        None, description="The jobs of its sweep it trained with as one stacked model (null: alone)."
    )
    notes: str | None = Field(None, description="Free text for people (PATCH sets it).")


class JobDetail(JobSummary):
    """Everything known about a job."""

    spec: JobSpec
    warnings: list[SpecWarning]
    cancel_requested: bool
    worker: str | None
    device: str | None
    attempts: int
    queued_at: UtcDateTime
    heartbeat_at: UtcDateTime | None
    sweep_params: dict[str, Any] | None = Field(
        None, description="The values its sweep set: {dotted path: value, 'training.seed': seed}."
    )


class JobPage(BaseModel):
    """One page of jobs, newest first."""

    items: list[JobSummary]
    next_cursor: str | None = Field(description="Pass as ?cursor= for the next page; null on the last page.")


class MetricsPage(BaseModel):
    """Per-epoch metric records of a job, oldest epoch first."""

    job_id: str
    items: list[EpochRecord] = Field(
        description="One record per epoch; only the metrics the run measured (or the `fields` asked for)."
    )


class CheckpointInfo(BaseModel):
    """A stored checkpoint file."""

    name: str = Field(examples=["best"])
    epoch: int
    size_bytes: int
    updated_at: UtcDateTime
    url: str = Field(description="Where to download it (same authentication).")


class PredictRequest(BaseModel):
    """Raw (unscaled) examples, one row each; sequences and images are flattened row-major."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"examples": [{"inputs": [[5.1, 3.5, 1.4, 0.2], [6.7, 3.0, 5.2, 2.3]]}]},
    )

    inputs: list[list[Annotated[float, Field(allow_inf_nan=False)]]] = Field(
        min_length=1, max_length=MAX_PREDICT_ROWS, description="Rows of features."
    )
    checkpoint: Literal["best", "last"] | None = Field(
        None,
        description="Which weights answer; default: the checkpoint whose weights result.test measured "
        "(`result.model_checkpoint`: best when early stopping restored the best epoch, else last).",
    )


class PredictResponse(BaseModel):
    """Predictions of one of the job's checkpoints."""

    job_id: str
    checkpoint: str = Field(description="Which checkpoint answered: best or last.")
    epoch: int
    classes: list[ClassLabel] | None = Field(
        None,
        description="Classification: the predicted class of each row, in the dataset's own type (digits: "
        "integers, iris: names).",
    )
    probabilities: list[list[float]] | None = Field(
        None, description="Classification: per row, the probability of each class in `class_labels` order."
    )
    class_labels: list[ClassLabel] | None = Field(
        None, description="Classification: the class of each probability column.", examples=[[0, 1, 2]]
    )
    values: list[list[float]] | None = Field(None, description="Regression: predicted values of each row.")
