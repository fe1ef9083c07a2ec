"""SQLAlchemy tables. Importing this package registers all of them on Base.metadata."""

from api.models.api_key import ApiKey
from api.models.dataset import Dataset
from api.models.job import Checkpoint, EpochMetric, Job, JobStatus, JobTag
from api.models.sweep import Sweep
from api.models.worker import WorkerBeat

__all__ = [
    "ApiKey",
    "Checkpoint",
    "Dataset",
    "EpochMetric",
    "Job",
    "JobStatus",
    "JobTag",
    "Sweep",
    "WorkerBeat",
]
