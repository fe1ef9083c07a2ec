"""/v1/datasets: upload, list, read."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, File, Form, Path, Response, UploadFile

from api.datasets import service
from api.datasets.schemas import DatasetList, DatasetOut
from api.deps import ArtifactsDep, OwnerDep, SessionDep, SettingsDep
from api.errors import problem_responses
from training.spec import Task

router = APIRouter(prefix="/v1/datasets", tags=["datasets"])
DatasetId = Annotated[str, Path(max_length=64, pattern=r"^[A-Za-z0-9_-]+$", description="The dataset's id.")]


@router.post(
    "",
    status_code=201,
    operation_id="upload_dataset",
    summary="Upload a dataset",
    description="Multipart upload of a CSV with a header row (target: the last column, or `target`) or an "
    ".npz holding arrays X and y (read without pickle). The size is checked before parsing "
    "(TRAINCTL_MAX_UPLOAD_BYTES → 413), then rows, numbers per example and decompressed size from the "
    ".npz headers, or CSV rows as they arrive, before any data is unpacked (TRAINCTL_MAX_DATASET_ROWS, "
    "TRAINCTL_MAX_DATASET_FEATURES, TRAINCTL_MAX_DATASET_BYTES); a file that cannot be used is a 422 naming "
    "`file`. "
    'Train on it with `"dataset": {"id": "<id>"}`.',
    response_model=DatasetOut,
    responses=problem_responses(413),
)
def post_dataset(
    owner: OwnerDep,
    session: SessionDep,
    settings: SettingsDep,
    artifacts: ArtifactsDep,
    file: Annotated[UploadFile, File(description="A .csv with a header row, or an .npz with X and y.")],
    target: Annotated[str | None, Form(max_length=255, description="CSV target column.")] = None,
    task: Annotated[Task | None, Form(description="Override the inferred task.")] = None,
) -> DatasetOut:
    """Upload a dataset."""
    data = service.read_upload(file.file, settings.max_upload_bytes)
    return service.upload_dataset(
        session,
        owner=owner,
        filename=file.filename,
        data=data,
        target=target or None,
        task=task,
        artifacts=artifacts,
        settings=settings,
    )


@router.get(
    "",
    operation_id="list_datasets",
    summary="List datasets",
    description=f"Your uploaded datasets, newest first (the latest {service.MAX_LISTED}).",
    response_model=DatasetList,
    responses=problem_responses(),
)
def get_datasets(owner: OwnerDep, session: SessionDep) -> DatasetList:
    """List datasets."""
    return service.list_datasets(session, owner=owner)


@router.get(
    "/{dataset_id}",
    operation_id="get_dataset",
    summary="Get a dataset",
    description="Rows, feature columns, task and classes of one uploaded dataset.",
    response_model=DatasetOut,
    responses=problem_responses(404),
)
def get_dataset(
    dataset_id: DatasetId,
    owner: OwnerDep,
    session: SessionDep,
) -> DatasetOut:
    """Read one dataset."""
    return service.get_dataset(session, owner=owner, dataset_id=dataset_id)


@router.delete(
    "/{dataset_id}",
    status_code=204,
    operation_id="delete_dataset",
    summary="Delete a dataset",
    description="Removes the upload and its file, freeing its bytes from your storage quota "
    "(TRAINCTL_MAX_STORAGE_PER_OWNER). While a queued or running job trains on it the answer is 409; "
    "finished jobs keep their results and checkpoints.",
    response_class=Response,
    responses=problem_responses(404, 409),
)
def delete_dataset(
    dataset_id: DatasetId, owner: OwnerDep, session: SessionDep, artifacts: ArtifactsDep
) -> Response:
    """Delete a dataset."""
    service.delete_dataset(session, owner=owner, dataset_id=dataset_id, artifacts=artifacts)
    return Response(status_code=204)
