"""Metrics (JSON, filters, CSV), checkpoints (list, download) and predict's refusals."""

from __future__ import annotations

import csv
import io
from collections.abc import Callable
from typing import Any

from fastapi.testclient import TestClient

from tests.api.conftest import PROBLEM


def test_metrics_records_and_filters(
    client: TestClient,
    auth_headers: dict[str, str],
    submit: Callable[..., dict[str, Any]],
    finish_job: Callable[..., None],
) -> None:
    job_id = submit()["id"]
    assert client.get(f"/v1/jobs/{job_id}/metrics", headers=auth_headers).json() == {
        "job_id": job_id,
        "items": [],
    }
    finish_job(job_id, epochs=4)
    url = f"/v1/jobs/{job_id}/metrics"

    items = client.get(url, headers=auth_headers).json()["items"]
    assert [item["epoch"] for item in items] == [1, 2, 3, 4]
    assert items[0]["layers"][0] == {"name": "hidden0", "grad_norm": 0.1, "saturation": 0.0}

    later = client.get(url, params={"since_epoch": 2}, headers=auth_headers).json()["items"]
    assert [item["epoch"] for item in later] == [3, 4]

    slim = client.get(url, params={"fields": "val_loss, nope", "since_epoch": 3}, headers=auth_headers).json()
    assert slim["items"] == [{"epoch": 4, "val_loss": 0.3}]


def test_metrics_as_csv_flattens_layers(
    client: TestClient,
    auth_headers: dict[str, str],
    submit: Callable[..., dict[str, Any]],
    finish_job: Callable[..., None],
) -> None:
    job_id = submit()["id"]
    finish_job(job_id, epochs=2)
    response = client.get(f"/v1/jobs/{job_id}/metrics", params={"format": "csv"}, headers=auth_headers)
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(response.text)))
    assert list(rows[0])[:2] == ["epoch", "train_loss"]
    assert "layers.hidden0.grad_norm" in rows[0] and "layers.output.saturation" in rows[0]
    assert [row["epoch"] for row in rows] == ["1", "2"]
    assert float(rows[1]["layers.output.grad_norm"]) == 0.4

    fields = client.get(
        f"/v1/jobs/{job_id}/metrics", params={"format": "csv", "fields": "val_loss"}, headers=auth_headers
    )
    assert fields.text.splitlines()[0] == "epoch,val_loss"


def test_checkpoints_list_and_download(
    client: TestClient,
    auth_headers: dict[str, str],
    submit: Callable[..., dict[str, Any]],
    finish_job: Callable[..., None],
) -> None:
    job_id = submit()["id"]
    assert client.get(f"/v1/jobs/{job_id}/checkpoints", headers=auth_headers).json() == []
    payload = bytes(range(256)) * 5000  # over one streaming chunk
    finish_job(job_id, epochs=3, checkpoint=payload)

    listed = client.get(f"/v1/jobs/{job_id}/checkpoints", headers=auth_headers).json()
    assert [(item["name"], item["epoch"], item["size_bytes"]) for item in listed] == [
        ("best", 3, len(payload))
    ]
    download = client.get(listed[0]["url"], headers=auth_headers)
    assert download.status_code == 200 and download.content == payload
    assert download.headers["content-type"] == "application/octet-stream"
    assert f'filename="{job_id}-best.safetensors"' in download.headers["content-disposition"]

    missing = client.get(f"/v1/jobs/{job_id}/checkpoints/last", headers=auth_headers)
    assert missing.status_code == 404 and missing.headers["content-type"].startswith(PROBLEM)


def test_predict_before_any_checkpoint_is_409(
    client: TestClient, auth_headers: dict[str, str], submit: Callable[..., dict[str, Any]]
) -> None:
    job_id = submit()["id"]
    response = client.post(
        f"/v1/jobs/{job_id}/predict", json={"inputs": [[1, 2, 3, 4]]}, headers=auth_headers
    )
    assert response.status_code == 409 and response.headers["content-type"].startswith(PROBLEM)
    assert "has no 'best' checkpoint yet" in response.json()["detail"]  # the example spec restores best


def test_predict_input_shape_is_checked(
    client: TestClient,
    auth_headers: dict[str, str],
    submit: Callable[..., dict[str, Any]],
    finish_job: Callable[..., None],
) -> None:
    job_id = submit()["id"]
    finish_job(job_id)
    url = f"/v1/jobs/{job_id}/predict"
    for body in ({"inputs": []}, {"inputs": [[1, "a"]]}, {"inputs": "1,2"}):
        response = client.post(url, json=body, headers=auth_headers)
        assert response.status_code == 422, response.text
        assert response.json()["errors"][0]["field"].startswith("inputs")
    ragged = client.post(url, json={"inputs": [[1, 2], [1, 2, 3]]}, headers=auth_headers)
    assert ragged.status_code == 422 and ragged.json()["errors"][0]["field"] == "inputs"
