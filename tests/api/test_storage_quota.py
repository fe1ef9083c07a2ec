"""Per-owner storage quota over checkpoints and uploads: refused with what to delete, freed by deleting."""

from __future__ import annotations

import io
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient

from core.config import Settings
from training.spec import EXAMPLE_SPEC


@pytest.fixture
def settings(settings: Settings) -> Settings:
    """A 1 MiB quota per owner."""
    return settings.model_copy(update={"max_storage_per_owner": 2**20})


def upload(client: TestClient, headers: dict[str, str]) -> Any:
    buffer = io.BytesIO()
    np.savez(buffer, X=np.random.default_rng(0).normal(size=(7000, 10)), y=np.arange(7000) % 2)
    return client.post("/v1/datasets", files={"file": ("big.npz", buffer.getvalue())}, headers=headers)


def test_an_upload_over_the_quota_is_413_naming_what_to_delete(
    client: TestClient, auth_headers: dict[str, str], other_headers: dict[str, str]
) -> None:
    first = upload(client, auth_headers)
    assert first.status_code == 201, first.text
    second = upload(client, auth_headers)
    assert second.status_code == 413, second.text
    detail = second.json()["detail"]
    assert "TRAINCTL_MAX_STORAGE_PER_OWNER" in detail and "1.0 MiB" in detail
    assert f"DELETE /v1/datasets/{{id}} (largest: {first.json()['id']}" in detail
    assert upload(client, other_headers).status_code == 201  # the quota is per owner

    assert client.delete(f"/v1/datasets/{first.json()['id']}", headers=auth_headers).status_code == 204
    assert client.get(f"/v1/datasets/{first.json()['id']}", headers=auth_headers).status_code == 404
    assert upload(client, auth_headers).status_code == 201


def test_a_job_whose_checkpoints_would_pass_the_quota_is_429_naming_what_to_delete(
    client: TestClient,
    auth_headers: dict[str, str],
    submit: Callable[..., dict[str, Any]],
    finish_job: Callable[..., None],
) -> None:
    old = submit()["id"]
    finish_job(old, checkpoint=b"w" * 1_000_000)
    refused = client.post("/v1/jobs", json={"spec": EXAMPLE_SPEC}, headers=auth_headers)
    assert refused.status_code == 429, refused.text
    detail = refused.json()["detail"]
    assert "the checkpoints of this job" in detail and f"DELETE /v1/jobs/{{id}} (largest: {old}" in detail
    sweep = {"name": "s", "base": EXAMPLE_SPEC, "grid": {"activation": ["relu", "tanh"]}}
    assert client.post("/v1/sweeps", json=sweep, headers=auth_headers).status_code == 429

    assert client.delete(f"/v1/jobs/{old}", headers=auth_headers).status_code == 204
    assert client.post("/v1/jobs", json={"spec": EXAMPLE_SPEC}, headers=auth_headers).status_code == 202


def test_another_owners_dataset_cannot_be_deleted(
    client: TestClient, auth_headers: dict[str, str], other_headers: dict[str, str]
) -> None:
    dataset_id = upload(client, auth_headers).json()["id"]
    assert client.delete(f"/v1/datasets/{dataset_id}", headers=other_headers).status_code == 404
    assert client.get(f"/v1/datasets/{dataset_id}", headers=auth_headers).status_code == 200
