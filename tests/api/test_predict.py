"""Predict with a real checkpoint written by training.fit (the file a worker would have uploaded)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from core.config import Settings
from core.models import Checkpoint, Job
from training.spec import EXAMPLE_SPEC

FLOWERS = [[5.1, 3.5, 1.4, 0.2], [6.7, 3.0, 5.2, 2.3]]


@pytest.fixture(scope="module")
def iris_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The best checkpoint of a short iris run."""
    training = pytest.importorskip("training.loop")
    from training.spec import JobSpec

    spec = JobSpec.model_validate(
        {**EXAMPLE_SPEC, "training": {"epochs": 5, "batch_size": 16, "device": "cpu"}}
    )
    out = tmp_path_factory.mktemp("fit")
    training.fit(spec, out)
    return out / "checkpoints" / "best.safetensors"


def test_predict_from_the_best_checkpoint(
    app: FastAPI,
    client: TestClient,
    auth_headers: dict[str, str],
    settings: Settings,
    submit: Callable[..., dict[str, Any]],
    finish_job: Callable[..., None],
    iris_checkpoint: Path,
) -> None:
    job_id = submit()["id"]
    finish_job(job_id, epochs=5, checkpoint=iris_checkpoint.read_bytes())

    response = client.post(f"/v1/jobs/{job_id}/predict", json={"inputs": FLOWERS}, headers=auth_headers)
    assert response.status_code == 200, response.text
    prediction = response.json()
    assert (prediction["checkpoint"], prediction["epoch"]) == ("best", 5)
    assert len(prediction["classes"]) == 2 and all(len(row) == 3 for row in prediction["probabilities"])
    assert all(abs(sum(row) - 1) < 1e-5 for row in prediction["probabilities"])
    # Iris answers its class names, listed in the order of the probability columns.
    assert prediction["class_labels"] == ["setosa", "versicolor", "virginica"]
    for label, row in zip(prediction["classes"], prediction["probabilities"], strict=True):
        assert label == prediction["class_labels"][row.index(max(row))]
    assert prediction["values"] is None
    cached = list((settings.data_dir / "cache" / job_id).glob("*.safetensors"))
    assert len(cached) == 1

    narrow = client.post(f"/v1/jobs/{job_id}/predict", json={"inputs": [[1.0, 2.0]]}, headers=auth_headers)
    assert narrow.status_code == 422
    assert narrow.json()["errors"] == [
        {
            "field": "inputs",
            "message": "each row must have 4 values, like the training data's examples; got 2",
        }
    ]

    # A newer checkpoint replaces the cached copy.
    with app.state.session_factory() as session:
        row = session.get(Checkpoint, (job_id, "best"))
        assert row is not None
        row.epoch = 6
        session.commit()
    assert (
        client.post(f"/v1/jobs/{job_id}/predict", json={"inputs": FLOWERS}, headers=auth_headers).json()[
            "epoch"
        ]
        == 6
    )
    assert len(list((settings.data_dir / "cache" / job_id).glob("*.safetensors"))) == 1

    assert client.delete(f"/v1/jobs/{job_id}", headers=auth_headers).status_code == 204
    assert not (settings.data_dir / "cache" / job_id).exists()


def test_predict_and_download_default_to_the_checkpoint_the_test_metrics_measured(
    app: FastAPI,
    client: TestClient,
    auth_headers: dict[str, str],
    submit: Callable[..., dict[str, Any]],
    finish_job: Callable[..., None],
    iris_checkpoint: Path,
) -> None:
    # No early stopping: the run ends with (and tests) its last weights, although a `best` exists.
    spec = {**EXAMPLE_SPEC, "generalization": {}}
    job_id = submit(spec=spec)["id"]
    finish_job(job_id, epochs=5, checkpoint=iris_checkpoint.read_bytes())
    with app.state.session_factory() as session:
        best = session.get(Checkpoint, (job_id, "best"))
        assert best is not None
        best.epoch = 2
        key = f"jobs/{job_id}/checkpoints/last.safetensors"
        app.state.artifacts.put_bytes(iris_checkpoint.read_bytes(), key)
        session.add(Checkpoint(job_id=job_id, name="last", uri=key, epoch=5, size_bytes=best.size_bytes))
        session.commit()

    def predict(**extra: Any) -> dict[str, Any]:
        response = client.post(
            f"/v1/jobs/{job_id}/predict", json={"inputs": FLOWERS, **extra}, headers=auth_headers
        )
        assert response.status_code == 200, response.text
        return dict(response.json())

    assert (predict()["checkpoint"], predict()["epoch"]) == ("last", 5)  # what result.test measured
    assert (predict(checkpoint="best")["checkpoint"], predict(checkpoint="best")["epoch"]) == ("best", 2)
    bad = client.post(
        f"/v1/jobs/{job_id}/predict", json={"inputs": FLOWERS, "checkpoint": "epoch-3"}, headers=auth_headers
    )
    assert bad.status_code == 422
    download = client.get(f"/v1/jobs/{job_id}/checkpoints/model", headers=auth_headers)
    assert (
        download.status_code == 200
        and f"{job_id}-last.safetensors" in download.headers["content-disposition"]
    )
    # a result that names its checkpoint is believed over the spec
    with app.state.session_factory() as session:
        job = session.get(Job, job_id)
        assert job is not None
        job.result = {**(job.result or {}), "model_checkpoint": "best"}
        session.commit()
    assert predict()["checkpoint"] == "best"


@pytest.mark.parametrize(
    ("row", "says"),
    [
        ([1e39, 3.5, 1.4, 0.2], "rows 1 hold values that are not finite float32 numbers"),
        ([3e38, -3e38, 3e38, 3e38], "rows 1 overflow the network"),
    ],
    ids=["beyond float32", "overflows inside"],
)
def test_values_that_overflow_float32_are_a_422_naming_inputs(
    client: TestClient,
    auth_headers: dict[str, str],
    submit: Callable[..., dict[str, Any]],
    finish_job: Callable[..., None],
    iris_checkpoint: Path,
    row: list[float],
    says: str,
) -> None:
    job_id = submit()["id"]
    finish_job(job_id, epochs=5, checkpoint=iris_checkpoint.read_bytes())
    response = client.post(
        f"/v1/jobs/{job_id}/predict", json={"inputs": [FLOWERS[0], row]}, headers=auth_headers
    )
    assert response.status_code == 422, response.text
    body = response.json()
    assert body["errors"][0]["field"] == "inputs" and says in body["detail"]
