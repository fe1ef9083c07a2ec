"""SQLAlchemy tables. Importing this package registers all of them on Base.metadata."""

from core.models.api_key import ApiKey
from core.models.dataset import Dataset
from core.models.job import Checkpoint, EpochMetric, Job, JobCurve, JobCurveField, JobStatus, JobTag
from core.models.sweep import Sweep
from core.models.worker import WorkerBeat

__all__ = [
    "ApiKey",
    "Checkpoint",
    "Dataset",
    "EpochMetric",
    "Job",
    "JobCurve",
    "JobCurveField",
    "JobStatus",
    "JobTag",
    "Sweep",
    "WorkerBeat",
]
