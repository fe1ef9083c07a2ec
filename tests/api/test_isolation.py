"""Authentication, and owner isolation endpoint by endpoint: another owner's things are 404."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import select

from api.auth.service import create_key, hash_secret, revoke_key
from api.errors import NotFound
from core.models import ApiKey, Job
from tests.api.conftest import PROBLEM
from training.spec import EXAMPLE_SPEC

CSV = b"a,b,label\n" + b"".join(f"{i},{i % 5},{i % 2}\n".encode() for i in range(30))


def assert_unauthorized(response: Any) -> None:
    assert response.status_code == 401, response.text
    assert response.headers["content-type"].startswith(PROBLEM)
    assert response.headers["www-authenticate"] == "Bearer"


@pytest.mark.parametrize(
    ("method", "url"),
    [("GET", "/v1/jobs"), ("POST", "/v1/jobs"), ("GET", "/v1/datasets"), ("POST", "/v1/specs/validate")],
)
def test_missing_or_unknown_key_is_401(client: TestClient, method: str, url: str) -> None:
    assert_unauthorized(client.request(method, url))
    assert_unauthorized(client.request(method, url, headers={"Authorization": "Bearer tc_not-a-key"}))
    assert_unauthorized(client.request(method, url, headers={"Authorization": "Basic dXNlcjpwYXNz"}))


def test_revoked_key_is_refused_at_once(app: FastAPI, client: TestClient) -> None:
    with app.state.session_factory() as session:
        key, secret = create_key(session, owner="carol")
    headers = {"Authorization": f"Bearer {secret}"}
    assert client.get("/v1/jobs", headers=headers).status_code == 200
    with app.state.session_factory() as session:
        revoke_key(session, key_id=key.id)
        revoke_key(session, key_id=key.id)  # twice is harmless
        with pytest.raises(NotFound):
            revoke_key(session, key_id="key_missing")
    response = client.get("/v1/jobs", headers=headers)
    assert_unauthorized(response)
    assert "revoked" in response.json()["detail"]


def test_keys_are_random_and_stored_hashed(app: FastAPI) -> None:
    with app.state.session_factory() as session:
        secrets = [create_key(session, owner="dave")[1] for _ in range(3)]
        stored = list(session.scalars(select(ApiKey.key_hash)))
    assert len(set(secrets)) == 3 and all(len(secret) >= 40 for secret in secrets)
    assert all(secret not in stored for secret in secrets)
    assert {hash_secret(secret) for secret in secrets} <= set(stored)


def test_other_owner_gets_404_everywhere(
    app: FastAPI,
    client: TestClient,
    auth_headers: dict[str, str],
    other_headers: dict[str, str],
    submit: Callable[..., dict[str, Any]],
    finish_job: Callable[..., None],
) -> None:
    finished = submit()["id"]
    finish_job(finished)
    queued = submit()["id"]
    dataset = client.post("/v1/datasets", files={"file": ("d.csv", CSV)}, headers=auth_headers).json()["id"]

    foreign = [
        ("GET", f"/v1/jobs/{finished}", None),
        ("GET", f"/v1/jobs/{finished}/metrics", None),
        ("GET", f"/v1/jobs/{finished}/metrics?format=csv", None),
        ("GET", f"/v1/jobs/{finished}/checkpoints", None),
        ("GET", f"/v1/jobs/{finished}/checkpoints/best", None),
        ("POST", f"/v1/jobs/{finished}/predict", {"inputs": [[1, 2, 3, 4]]}),
        ("POST", f"/v1/jobs/{queued}/cancel", None),
        ("DELETE", f"/v1/jobs/{finished}", None),
        ("GET", f"/v1/datasets/{dataset}", None),
    ]
    for method, url, body in foreign:
        response = client.request(method, url, json=body, headers=other_headers)
        assert response.status_code == 404, (url, response.text)
        assert response.headers["content-type"].startswith(PROBLEM)
        # The owner still sees it: the 404 is about ownership, not existence.
        if method == "GET":
            assert client.get(url, headers=auth_headers).status_code == 200, url

    assert client.get("/v1/jobs", headers=other_headers).json()["items"] == []
    assert client.get("/v1/datasets", headers=other_headers).json()["items"] == []
    # Bob cannot train on Alice's upload either.
    spec = {**EXAMPLE_SPEC, "dataset": {"id": dataset}}
    refused = client.post("/v1/jobs", json={"spec": spec}, headers=other_headers)
    assert refused.status_code == 422 and refused.json()["errors"][0]["field"] == "spec.dataset.id"
    assert client.post("/v1/jobs", json={"spec": spec}, headers=auth_headers).status_code == 202

    with app.state.session_factory() as session:
        statuses = {job_id: status for job_id, status in session.execute(select(Job.id, Job.status))}
    assert statuses[queued] == "queued" and statuses[finished] == "succeeded"  # nothing was changed


def test_other_owner_gets_404_on_sweeps_compare_events_and_plots(
    client: TestClient,
    auth_headers: dict[str, str],
    other_headers: dict[str, str],
    submit: Callable[..., dict[str, Any]],
    finish_job: Callable[..., None],
) -> None:
    from tests.api.test_sweeps import post_sweep

    finished = submit()["id"]
    finish_job(finished)
    sweep = post_sweep(client, auth_headers, seeds=1)
    assert sweep.status_code == 202, sweep.text
    sweep_id = sweep.json()["id"]
    bobs = submit(headers=other_headers)["id"]

    foreign = [
        ("GET", f"/v1/sweeps/{sweep_id}"),
        ("POST", f"/v1/sweeps/{sweep_id}/cancel"),
        ("GET", f"/v1/compare?jobs={finished}"),
        ("GET", f"/v1/compare?jobs={bobs},{finished}"),  # one foreign job in the list is enough
        ("GET", f"/v1/compare?jobs={finished}&format=csv"),
        ("GET", f"/v1/compare?sweep={sweep_id}"),
        ("GET", f"/v1/compare/plot.png?jobs={finished}"),
        ("GET", f"/v1/compare/plot.png?sweep={sweep_id}"),
        ("GET", f"/v1/jobs/{finished}/events"),
        ("GET", f"/v1/jobs/{finished}/plots/gradients.png"),
        ("GET", f"/v1/jobs/{finished}/plots/saturation.png"),
    ]
    for method, url in foreign:
        response = client.request(method, url, headers=other_headers)
        assert response.status_code == 404, (url, response.text)
        assert response.headers["content-type"].startswith(PROBLEM), url
        # Exactly what a job or sweep that never existed gets: nothing tells "foreign" from "missing".
        missing = client.request(
            method,
            url.replace(finished, "job_0000000000000000").replace(sweep_id, "sw_0000000000000000"),
            headers=other_headers,
        )
        assert missing.status_code == 404 and missing.json()["title"] == response.json()["title"], url
        if method == "GET" and "sweep=" not in url and bobs not in url:
            assert client.get(url, headers=auth_headers).status_code in {200, 409}, url  # the owner sees it
    assert client.get(f"/v1/sweeps/{sweep_id}", headers=auth_headers).json()["counts"]["queued"] == 4
    assert client.get("/v1/sweeps", headers=other_headers).json()["items"] == []
