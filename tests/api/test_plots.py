"""PNG plots: compared curves, gradient norms and saturation by layer; sizes, bounds, isolation."""

from __future__ import annotations

import copy
import io
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from tests.api.runs import finish_run
from training.spec import EXAMPLE_SPEC


def decode(response: Any) -> Any:
    """The PNG as an array of pixels (height, width, channels)."""
    import matplotlib.image

    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "image/png"
    return matplotlib.image.imread(io.BytesIO(response.content), format="png")


def job_with(client: TestClient, headers: dict[str, str], activation: str) -> str:
    spec = copy.deepcopy(EXAMPLE_SPEC) | {"activation": activation}
    return str(client.post("/v1/jobs", json={"spec": spec}, headers=headers).json()["id"])


def test_compare_plot_has_the_asked_size(
    app: FastAPI, client: TestClient, auth_headers: dict[str, str]
) -> None:
    body = {"name": "act", "base": EXAMPLE_SPEC, "grid": {"activation": ["sigmoid", "relu"]}, "seeds": 2}
    sweep = client.post("/v1/sweeps", json=body, headers=auth_headers).json()
    for index, job in enumerate(sweep["jobs"]):
        finish_run(app, job["id"], [1.0, 0.5 + index / 10, 0.2 + index / 10])
    image = decode(client.get(f"/v1/compare/plot.png?sweep={sweep['id']}", headers=auth_headers))
    assert image.shape[:2] == (600, 1000)
    ids = ",".join(job["id"] for job in sweep["jobs"][::2])
    url = f"/v1/compare/plot.png?jobs={ids}&metric=val_accuracy&width=640&height=480&target=val_accuracy>0.8"
    assert decode(client.get(url, headers=auth_headers)).shape[:2] == (480, 640)
    assert image.std() > 0.05, "something is drawn"


def test_gradients_plot(app: FastAPI, client: TestClient, auth_headers: dict[str, str]) -> None:
    job_id = job_with(client, auth_headers, "sigmoid")
    finish_run(app, job_id, [1.0, 0.8, 0.6, 0.5])
    image = decode(
        client.get(f"/v1/jobs/{job_id}/plots/gradients.png?width=800&height=500", headers=auth_headers)
    )
    assert image.shape[:2] == (500, 800) and image.std() > 0.05


@pytest.mark.parametrize("activation", ["sigmoid", "relu"])
def test_saturation_or_dead_units_plot(
    app: FastAPI, client: TestClient, auth_headers: dict[str, str], activation: str
) -> None:
    job_id = job_with(client, auth_headers, activation)
    finish_run(app, job_id, [1.0, 0.8])
    assert decode(client.get(f"/v1/jobs/{job_id}/plots/saturation.png", headers=auth_headers)).shape[:2] == (
        600,
        1000,
    )


def test_saturation_of_an_activation_with_neither_is_409(
    app: FastAPI, client: TestClient, auth_headers: dict[str, str]
) -> None:
    job_id = job_with(client, auth_headers, "elu")
    finish_run(app, job_id, [1.0, 0.8])
    response = client.get(f"/v1/jobs/{job_id}/plots/saturation.png", headers=auth_headers)
    assert response.status_code == 409 and "elu" in response.json()["detail"]
    assert decode(client.get(f"/v1/jobs/{job_id}/plots/gradients.png", headers=auth_headers)).size


def test_a_job_without_epochs_gets_an_image_that_says_so(
    client: TestClient, auth_headers: dict[str, str]
) -> None:
    job_id = job_with(client, auth_headers, "sigmoid")
    for plot in ("gradients", "saturation"):
        assert decode(client.get(f"/v1/jobs/{job_id}/plots/{plot}.png", headers=auth_headers)).shape[:2] == (
            600,
            1000,
        )
    assert decode(client.get(f"/v1/compare/plot.png?jobs={job_id}", headers=auth_headers)).size


@pytest.mark.parametrize("query", ["width=10", "height=100000", "width=abc"])
def test_sizes_are_bounded(client: TestClient, auth_headers: dict[str, str], query: str) -> None:
    job_id = job_with(client, auth_headers, "relu")
    response = client.get(f"/v1/jobs/{job_id}/plots/gradients.png?{query}", headers=auth_headers)
    assert response.status_code == 422, response.text


def test_another_owners_job_has_no_plots(
    client: TestClient, auth_headers: dict[str, str], other_headers: dict[str, str]
) -> None:
    job_id = job_with(client, auth_headers, "relu")
    for plot in ("gradients", "saturation"):
        assert client.get(f"/v1/jobs/{job_id}/plots/{plot}.png", headers=other_headers).status_code == 404
