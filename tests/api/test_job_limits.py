"""Per-job limits checked at submission: the estimated peak memory."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from fastapi.testclient import TestClient

from core.config import Settings
from core.models import Job
from tests.api.test_bad_input import assert_problem
from training.spec import EXAMPLE_SPEC

LONG_SEQUENCES = {
    **EXAMPLE_SPEC,
    "dataset": {"name": "adding", "length": 2000, "samples": 1_000_000},
    "network": {"type": "rnn", "cell": "gru", "hidden_size": 16},
    "activation": "tanh",
}


@pytest.fixture
def settings(settings: Settings) -> Settings:
    """A 1 GiB budget per job, whatever this host has."""
    return settings.model_copy(update={"max_job_memory": 2**30})


def test_a_spec_that_needs_more_memory_than_the_limit_is_refused_with_the_estimate(
    client: TestClient, auth_headers: dict[str, str], count_rows: Callable[[type], int]
) -> None:
    for url in ("/v1/jobs", "/v1/specs/validate"):
        response = client.post(url, json={"spec": LONG_SEQUENCES}, headers=auth_headers)
        assert_problem(response, 422, "spec.dataset", says="TRAINCTL_MAX_JOB_MEMORY")
        detail = response.json()["detail"]
        assert "GiB of memory at its peak" in detail and "the limit is 1.0 GiB" in detail
        assert "fewer samples or shorter sequences" in detail
    assert count_rows(Job) == 0


@pytest.mark.parametrize(
    ("change", "field", "advice"),
    [
        ({"network": {"hidden_layers": [6000, 6000]}}, "spec.network", "fewer or narrower layers"),
        (
            {
                "dataset": {"name": "moons", "samples": 300_000},
                "network": {"hidden_layers": [2048, 2048]},
                "training": {"batch_size": 300_000},
            },
            "spec.training.batch_size",
            "smaller training.batch_size",
        ),
    ],
)
def test_the_error_names_the_part_to_shrink(
    client: TestClient, auth_headers: dict[str, str], change: dict[str, Any], field: str, advice: str
) -> None:
    spec = {**EXAMPLE_SPEC, "dataset": {"name": "moons"}, **change}
    response = client.post("/v1/jobs", json={"spec": spec}, headers=auth_headers)
    assert_problem(response, 422, field, says=advice)
    assert "TRAINCTL_MAX_JOB_MEMORY" in response.json()["detail"]


def test_every_limit_a_spec_breaks_is_reported_at_once(
    client: TestClient, auth_headers: dict[str, str]
) -> None:
    spec = {**LONG_SEQUENCES, "training": {"epochs": 50_000}}
    response = client.post("/v1/jobs", json={"spec": spec}, headers=auth_headers)
    fields = [error["field"] for error in response.json()["errors"]]
    assert fields == ["spec.training.epochs", "spec.dataset"], response.text


def test_validate_reports_the_estimate_and_small_jobs_pass(
    client: TestClient, auth_headers: dict[str, str]
) -> None:
    report = client.post("/v1/specs/validate", json={"spec": EXAMPLE_SPEC}, headers=auth_headers)
    assert report.status_code == 200, report.text
    assert 2**20 < report.json()["peak_memory_bytes"] < 2**30
    assert client.post("/v1/jobs", json={"spec": EXAMPLE_SPEC}, headers=auth_headers).status_code == 202


def test_the_default_limit_is_half_of_this_hosts_memory() -> None:
    settings = Settings(_env_file=None)  # type: ignore[call-arg]
    physical = __import__("os").sysconf("SC_PAGE_SIZE") * __import__("os").sysconf("SC_PHYS_PAGES")
    assert 0 < settings.resolved_max_job_memory <= physical // 2
