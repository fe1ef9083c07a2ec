"""Uploading, listing and reading datasets, and training specs that refer to them."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
from fastapi.testclient import TestClient

from core.config import Settings
from training.spec import EXAMPLE_SPEC


def test_csv_upload(client: TestClient, auth_headers: dict[str, str], settings: Settings) -> None:
    content = b"x1,x2,x3,species\n" + b"".join(
        f"{i},{i / 2},{i % 3},{'ab'[i % 2]}\n".encode() for i in range(40)
    )
    response = client.post(
        "/v1/datasets", files={"file": ("../../etc/evil.csv", content)}, headers=auth_headers
    )
    assert response.status_code == 201, response.text
    dataset = response.json()
    assert dataset["id"].startswith("ds_")
    assert (dataset["rows"], dataset["columns"], dataset["task"], dataset["classes"]) == (
        40,
        3,
        "classification",
        2,
    )
    assert dataset["filename"] == "evil.csv" and dataset["format"] == "csv"
    # Stored under a generated name, never the client's.
    stored = list((Path(settings.resolved_artifacts_url) / "datasets").iterdir())
    assert [path.name for path in stored] == [f"{dataset['id']}.csv"]
    assert stored[0].read_bytes() == content

    assert client.get(f"/v1/datasets/{dataset['id']}", headers=auth_headers).json() == dataset
    assert client.get("/v1/datasets", headers=auth_headers).json()["items"] == [dataset]


def test_npz_regression_upload_and_a_spec_that_uses_it(
    client: TestClient, auth_headers: dict[str, str]
) -> None:
    rng = np.random.default_rng(0)
    buffer = io.BytesIO()
    np.savez(buffer, X=rng.normal(size=(50, 6)), y=rng.normal(size=50))
    dataset = client.post(
        "/v1/datasets", files={"file": ("points.npz", buffer.getvalue())}, headers=auth_headers
    ).json()
    assert (dataset["rows"], dataset["columns"], dataset["task"], dataset["classes"]) == (
        50,
        6,
        "regression",
        None,
    )

    spec = {**EXAMPLE_SPEC, "dataset": {"id": dataset["id"]}, "network": {"hidden_layers": [8]}}
    report = client.post("/v1/specs/validate", json={"spec": spec}, headers=auth_headers).json()
    assert (report["features"], report["outputs"], report["parameters"]) == (6, 1, 6 * 8 + 8 + 8 + 1)
    assert client.post("/v1/jobs", json={"spec": spec}, headers=auth_headers).status_code == 202


def test_csv_target_and_task_fields(client: TestClient, auth_headers: dict[str, str]) -> None:
    content = b"label,a,b\n" + b"".join(f"{i % 4},{i},{i * 2}\n".encode() for i in range(20))
    as_classes = client.post(
        "/v1/datasets", files={"file": ("t.csv", content)}, data={"target": "label"}, headers=auth_headers
    ).json()
    assert (as_classes["columns"], as_classes["classes"], as_classes["target"]) == (2, 4, "label")
    as_values = client.post(
        "/v1/datasets",
        files={"file": ("t.csv", content)},
        data={"target": "label", "task": "regression"},
        headers=auth_headers,
    ).json()
    assert as_values["task"] == "regression" and as_values["classes"] is None
    missing = client.post(
        "/v1/datasets", files={"file": ("t.csv", content)}, data={"target": "nope"}, headers=auth_headers
    )
    assert missing.status_code == 422 and "nope" in missing.json()["detail"]


def _npz(**arrays: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)  # type: ignore[arg-type]
    return buffer.getvalue()


def test_sequence_upload_sizes_rnn_and_mlp_networks(client: TestClient, auth_headers: dict[str, str]) -> None:
    rng = np.random.default_rng(0)
    content = _npz(X=rng.normal(size=(40, 12, 3)), y=rng.integers(0, 2, size=40))
    dataset = client.post("/v1/datasets", files={"file": ("seq.npz", content)}, headers=auth_headers).json()
    assert (dataset["columns"], dataset["example_shape"], dataset["classes"]) == (3, [12, 3], 2)

    rnn = {
        **EXAMPLE_SPEC,
        "dataset": {"id": dataset["id"]},
        "network": {"type": "rnn", "cell": "gru", "hidden_size": 8, "layers": 1},
        "activation": "tanh",
        "normalization": {"inputs": "zscore", "layers": "none"},
    }
    report = client.post("/v1/specs/validate", json={"spec": rnn}, headers=auth_headers)
    assert report.status_code == 200, report.text
    assert report.json()["parameters"] == 3 * (8 * 3 + 8 * 8 + 2 * 8) + 8 * 2 + 2

    mlp = {**EXAMPLE_SPEC, "dataset": {"id": dataset["id"]}, "network": {"hidden_layers": [4]}}
    flat = client.post("/v1/specs/validate", json={"spec": mlp}, headers=auth_headers).json()
    assert flat["parameters"] == 36 * 4 + 4 + 4 * 2 + 2  # an mlp sees the 12 x 3 example flattened


def test_networks_that_cannot_read_an_upload_are_refused(
    client: TestClient, auth_headers: dict[str, str]
) -> None:
    table = client.post(
        "/v1/datasets",
        files={"file": ("t.npz", _npz(X=np.ones((20, 3)), y=np.arange(20) % 2))},
        headers=auth_headers,
    ).json()
    for network in (
        {"type": "rnn", "cell": "lstm", "hidden_size": 4},
        {"type": "cnn", "channels": [4], "hidden_layers": [8]},
    ):
        spec = {**EXAMPLE_SPEC, "dataset": {"id": table["id"]}, "network": network, "activation": "tanh"}
        response = client.post("/v1/jobs", json={"spec": spec}, headers=auth_headers)
        assert response.status_code == 422, response.text
        assert response.json()["errors"][0]["field"] == "spec.network.type"
