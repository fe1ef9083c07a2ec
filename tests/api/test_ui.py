"""The /ui dashboard over HTTP: sign-in and its cookie, CSRF, owner isolation, CSP, error pages, pages."""

from __future__ import annotations

import re
from collections.abc import Callable
from html.parser import HTMLParser
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import select

from api.auth.service import create_key, revoke_key
from core.models import ApiKey, Job
from training.spec import EXAMPLE_SPEC

CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')


def csrf_of(html: str) -> str:
    found = CSRF.search(html)
    assert found, html[:2000]
    return found[1]


def sign_in(client: TestClient, key: str) -> str:
    """Sign in through the form; returns the session's CSRF token."""
    token = csrf_of(client.get("/ui/signin").text)
    response = client.post("/ui/signin", data={"csrf_token": token, "api_key": key}, follow_redirects=False)
    assert response.status_code == 303 and response.headers["location"] == "/ui", response.text
    return csrf_of(client.get("/ui").text)


@pytest.fixture
def signed_in(client: TestClient, api_key: str) -> str:
    """alice signed in on `client`; the CSRF token."""
    return sign_in(client, api_key)


@pytest.fixture
def bob(app: FastAPI) -> str:
    """The plaintext key of a second owner."""
    with app.state.session_factory() as session:
        return create_key(session, owner="bob")[1]


class ScriptAudit(HTMLParser):
    """Collects what a strict CSP would block: inline scripts, event-handler attributes, style attributes."""

    def __init__(self) -> None:
        super().__init__()
        self.problems: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        names = {name for name, _value in attrs}
        if tag == "script" and "src" not in names:
            self.problems.append("inline <script>")
        if tag == "style":
            self.problems.append("<style> element")
        self.problems += [f"{tag}[{name}]" for name in names if name.startswith("on") or name == "style"]


def assert_strict_page(response: Any) -> None:
    assert response.headers["content-type"].startswith("text/html")
    csp = response.headers["content-security-policy"]
    assert "script-src 'self';" in csp and "style-src 'self';" in csp and "unsafe" not in csp
    audit = ScriptAudit()
    audit.feed(response.text)
    assert audit.problems == []
    assert "Traceback" not in response.text


def test_root_redirects_and_pages_ask_for_a_key(client: TestClient) -> None:
    assert client.get("/", follow_redirects=False).headers["location"] == "/ui"
    for path in ("/ui", "/ui/jobs/job_1", "/ui/submit", "/ui/sweeps", "/ui/sweeps/sw_1"):
        response = client.get(path, follow_redirects=False)
        assert response.status_code == 303 and response.headers["location"] == "/ui/signin", path
    assert_strict_page(client.get("/ui/signin"))


def test_sign_in_sets_a_signed_http_only_strict_cookie_and_never_echoes_the_key(
    client: TestClient, api_key: str
) -> None:
    token = csrf_of(client.get("/ui/signin").text)
    response = client.post(
        "/ui/signin", data={"csrf_token": token, "api_key": api_key}, follow_redirects=False
    )
    cookie = response.headers["set-cookie"]
    assert "trainctl_session=" in cookie and "HttpOnly" in cookie and "SameSite=strict" in cookie
    assert "Path=/ui" in cookie and "Max-Age=28800" in cookie and "Secure" not in cookie
    assert api_key not in cookie and api_key not in response.headers["location"]
    assert csrf_of(client.get("/ui").text) != token  # a fresh token after sign-in
    for path in ("/ui", "/ui/submit", "/ui/sweeps"):
        page = client.get(path)
        assert page.status_code == 200 and api_key not in page.text
        assert_strict_page(page)


def test_cookie_is_secure_over_https(app: FastAPI, api_key: str) -> None:
    with TestClient(app, base_url="https://testserver") as client:
        token = csrf_of(client.get("/ui/signin").text)
        response = client.post(
            "/ui/signin", data={"csrf_token": token, "api_key": api_key}, follow_redirects=False
        )
        assert "Secure" in response.headers["set-cookie"]


def test_a_wrong_key_is_refused_without_echo(client: TestClient) -> None:
    token = csrf_of(client.get("/ui/signin").text)
    response = client.post("/ui/signin", data={"csrf_token": token, "api_key": "tc_wrong-key-123"})
    assert response.status_code == 401 and "Unknown API key" in response.text
    assert "tc_wrong-key-123" not in response.text
    assert client.get("/ui", follow_redirects=False).status_code == 303


def test_sign_out_clears_the_cookie_and_needs_the_csrf_token(client: TestClient, signed_in: str) -> None:
    assert client.post("/ui/signout", data={}).status_code == 403
    assert client.get("/ui").status_code == 200  # still signed in
    response = client.post("/ui/signout", data={"csrf_token": signed_in}, follow_redirects=False)
    assert response.headers["location"] == "/ui/signin?signed_out=true"
    assert (
        'trainctl_session=""' in response.headers["set-cookie"]
        and "Max-Age=0" in response.headers["set-cookie"]
    )
    assert client.get("/ui", follow_redirects=False).headers["location"] == "/ui/signin"


def test_tampered_expired_or_revoked_sessions_end(
    app: FastAPI, client: TestClient, signed_in: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    value = client.cookies["trainctl_session"]
    client.cookies.set(
        "trainctl_session", value[:-2] + ("AA" if not value.endswith("AA") else "BB"), path="/ui"
    )
    assert client.get("/ui", follow_redirects=False).status_code == 303
    client.cookies.set("trainctl_session", value, path="/ui")
    assert client.get("/ui").status_code == 200
    import itsdangerous.timed

    later = itsdangerous.timed.time.time() + 8 * 3600 + 5
    monkeypatch.setattr(itsdangerous.timed.time, "time", lambda: later)
    assert client.get("/ui", follow_redirects=False).status_code == 303
    monkeypatch.undo()
    assert client.get("/ui").status_code == 200
    with app.state.session_factory() as session:
        for key in session.scalars(select(ApiKey)).all():
            revoke_key(session, key_id=key.id)
    assert client.get("/ui", follow_redirects=False).status_code == 303


def test_state_changing_forms_need_the_csrf_token(
    client: TestClient, signed_in: str, submit: Callable[..., dict[str, Any]], app: FastAPI
) -> None:
    job = submit()
    for data in ({}, {"csrf_token": "forged"}):
        for path in (f"/ui/jobs/{job['id']}/cancel", f"/ui/jobs/{job['id']}/delete", "/ui/submit"):
            response = client.post(path, data=data)
            assert response.status_code == 403 and "Form expired" in response.text, path
            assert_strict_page(response)
    with app.state.session_factory() as session:
        assert session.get(Job, job["id"]).status == "queued"  # type: ignore[union-attr]
    response = client.post(
        f"/ui/jobs/{job['id']}/cancel", data={"csrf_token": signed_in}, follow_redirects=False
    )
    assert response.status_code == 303
    with app.state.session_factory() as session:
        assert session.get(Job, job["id"]).status == "cancelled"  # type: ignore[union-attr]


def test_another_owners_things_are_404_pages(
    client: TestClient,
    bob: str,
    auth_headers: dict[str, str],
    submit: Callable[..., dict[str, Any]],
    finish_job: Callable[..., None],
) -> None:
    job = submit()
    finish_job(job["id"])
    sweep = {"name": "s", "base": EXAMPLE_SPEC, "grid": {"activation": ["relu", "tanh"]}}
    sweep_id = client.post("/v1/sweeps", json=sweep, headers=auth_headers).json()["id"]
    token = sign_in(client, bob)
    job_id = job["id"]
    for path in (
        f"/ui/sweeps/{sweep_id}",
        f"/ui/sweeps/{sweep_id}/plot.png",
        f"/ui/sweeps/{sweep_id}/compare.csv",
        f"/ui/jobs/{job_id}",
        f"/ui/jobs/{job_id}/events",
        f"/ui/jobs/{job_id}/plots/gradients.png",
        f"/ui/jobs/{job_id}/checkpoints/best",
        f"/ui/jobs/{job_id}/metrics.csv",
        "/ui/jobs/job_missing",
        "/ui/jobs/bad%20id",
        "/ui/no/such/page",
    ):
        response = client.get(path)
        assert response.status_code == 404, path
        assert "404 · Not found" in response.text
        assert_strict_page(response)
    for action in ("cancel", "delete", "predict"):
        response = client.post(f"/ui/jobs/{job_id}/{action}", data={"csrf_token": token, "rows": "1,2,3,4"})
        assert response.status_code == 404, action
    assert client.post(f"/ui/sweeps/{sweep_id}/cancel", data={"csrf_token": token}).status_code == 404
    assert client.get("/ui").text.count("<tr>") == 2  # bob sees no rows: the header and "No jobs match"


def test_an_unexpected_error_is_a_500_page_without_a_traceback(
    client: TestClient, signed_in: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    import api.ui.jobs

    def broken(*_args: Any, **_kwargs: Any) -> None:
        raise RuntimeError("secret internals")

    monkeypatch.setattr(api.ui.jobs, "job_table", broken)
    response = client.get("/ui")
    assert response.status_code == 500
    assert "secret internals" not in response.text
    assert_strict_page(response)


def test_docs_may_show_blob_images_and_nothing_more(client: TestClient) -> None:
    csp = client.get("/docs").headers["content-security-policy"]
    assert "img-src 'self' data: blob:" in csp
    assert "blob:" not in csp.replace("img-src 'self' data: blob:", "").replace("worker-src 'self' blob:", "")


def test_jobs_table_filters_sorts_and_pages(
    client: TestClient,
    signed_in: str,
    auth_headers: dict[str, str],
    finish_job: Callable[..., None],
    app: FastAPI,
) -> None:
    ids = []
    for index in range(3):
        body = {"spec": EXAMPLE_SPEC, "name": f"run-{index}", "tags": ["even" if index % 2 == 0 else "odd"]}
        ids.append(client.post("/v1/jobs", json=body, headers=auth_headers).json()["id"])
    for index, job_id in enumerate(ids[:2]):
        finish_job(job_id)
        with app.state.session_factory() as session:
            job = session.get(Job, job_id)
            assert job is not None
            job.result = {**(job.result or {}), "best": {"epoch": 3, "val_loss": 0.5 - index * 0.3}}
            session.commit()

    def names(**query: str) -> list[str]:
        html = client.get("/ui", params=query).text
        return re.findall(r'<a href="/ui/jobs/job_[0-9a-f]+">(run-\d)</a>', html)

    assert names() == ["run-2", "run-1", "run-0"]  # newest first
    assert names(sort="val_loss") == ["run-1", "run-0", "run-2"]  # lowest first, no value last
    assert names(status="queued") == ["run-2"]
    assert names(tag="even") == ["run-2", "run-0"]
    assert names(name="N-1") == ["run-1"]  # contains, case-insensitive
    assert names(name="%") == []  # LIKE wildcards are plain characters
    fragment = client.get("/ui", headers={"HX-Request": "true", "HX-Target": "jobs"})
    assert fragment.text.lstrip().startswith('<div id="jobs"') and "every 5s" in fragment.text
    assert client.get("/ui", params={"status": "nope"}).status_code == 422
    assert client.get("/ui", params={"sort": "nope"}).status_code == 422


def test_job_page_shows_epochs_curves_files_and_deletes_with_confirmation(
    client: TestClient,
    signed_in: str,
    submit: Callable[..., dict[str, Any]],
    finish_job: Callable[..., None],
) -> None:
    job = submit()
    finish_job(job["id"], epochs=4)
    page = client.get(f"/ui/jobs/{job['id']}")
    assert page.status_code == 200
    assert_strict_page(page)
    body = page.text
    assert body.count('<tr><th scope="row">') >= 4 and "sse-connect" not in body  # finished: not live
    assert '<svg class="chart"' in body and "train_loss from 1 at epoch 1" in body
    assert f"/ui/jobs/{job['id']}/checkpoints/best" in body and '<details class="confirm">' in body
    download = client.get(f"/ui/jobs/{job['id']}/checkpoints/best")
    assert download.status_code == 200 and download.content == b"w"
    plot = client.get(f"/ui/jobs/{job['id']}/plots/gradients.png")
    assert plot.status_code == 200 and plot.content.startswith(b"\x89PNG")
    events = client.get(f"/ui/jobs/{job['id']}/events?after=2")
    assert "event: epoch\nid" not in events.text and "event: end" in events.text
    rows = events.text.split("event: epoch\n", 1)[1].split("\n\n", 1)[0]
    assert rows.count("<tr>") == 2 and '"row">3<' in rows  # epochs 3 and 4: the page already had 1, 2
    response = client.post(
        f"/ui/jobs/{job['id']}/delete", data={"csrf_token": signed_in}, follow_redirects=False
    )
    assert response.headers["location"] == f"/ui?deleted={job['id']}"
    assert client.get(f"/ui/jobs/{job['id']}").status_code == 404


def test_submit_validates_with_errors_by_line_and_submits(client: TestClient, signed_in: str) -> None:
    import json

    page = client.get("/ui/submit")
    assert "&#34;iris&#34;" in page.text and "idempotency_key" in page.text
    spec = json.dumps({**EXAMPLE_SPEC, "optimizer": {"name": "adam", "learning_rate": -1}}, indent=2)
    form = {"csrf_token": signed_in, "action": "validate", "name": "", "tags": "", "spec": spec}
    response = client.post("/ui/submit", data=form)
    assert response.status_code == 422
    lines = spec.splitlines()
    line = next(number for number, text in enumerate(lines, 1) if '"learning_rate": -1' in text)
    assert f"line {line}</span>" in response.text and "spec.optimizer.learning_rate" in response.text
    broken = client.post("/ui/submit", data={**form, "spec": '{"dataset": }'})
    assert broken.status_code == 422 and "not JSON" in broken.text and "line 1</span>" in broken.text
    valid = client.post("/ui/submit", data={**form, "spec": json.dumps(EXAMPLE_SPEC), "tags": "a, b"})
    assert valid.status_code == 200 and "Trainable parameters" in valid.text and "131" in valid.text
    submitted = {**form, "action": "submit", "spec": json.dumps(EXAMPLE_SPEC), "idempotency_key": "k-1"}
    first = client.post("/ui/submit", data=submitted, follow_redirects=False)
    again = client.post("/ui/submit", data=submitted, follow_redirects=False)
    assert first.status_code == 303 and first.headers["location"] == again.headers["location"]
    assert first.headers["location"].startswith("/ui/jobs/job_")


def test_sweep_page_shows_progress_groups_plot_csv_and_cancels_the_rest(
    app: FastAPI,
    client: TestClient,
    signed_in: str,
    auth_headers: dict[str, str],
    finish_job: Callable[..., None],
) -> None:
    body = {"name": "act", "base": EXAMPLE_SPEC, "grid": {"activation": ["relu", "tanh"]}, "seeds": 2}
    sweep = client.post("/v1/sweeps", json=body, headers=auth_headers).json()
    jobs = sweep["jobs"]
    for index, job in enumerate(jobs[:3]):  # relu × 2 and one tanh finish; the last tanh stays queued
        finish_job(job["id"])
        with app.state.session_factory() as session:
            row = session.get(Job, job["id"])
            assert row is not None
            row.result = {**(row.result or {}), "best": {"epoch": 3, "val_loss": 0.2 + 0.1 * index}}
            session.commit()
    page = client.get(f"/ui/sweeps/{sweep['id']}")
    assert page.status_code == 200
    assert_strict_page(page)
    assert "3 of 4 jobs finished" in page.text and "every 3s" in page.text  # live until all finish
    groups = page.text.split('id="groups-table"', 1)[1].split("</table>", 1)[0]
    assert groups.count("<tr") == 3 and '="relu"' in groups and '="tanh"' in groups
    assert "★ best" in groups.split('="tanh"')[0]  # relu has the lower val_loss
    plot = client.get(f"/ui/sweeps/{sweep['id']}/plot.png")
    assert plot.status_code == 200 and plot.content.startswith(b"\x89PNG")
    csv = client.get(f"/ui/sweeps/{sweep['id']}/compare.csv")
    assert csv.status_code == 200 and len(csv.text.strip().splitlines()) == 5
    response = client.post(
        f"/ui/sweeps/{sweep['id']}/cancel", data={"csrf_token": signed_in}, follow_redirects=False
    )
    assert response.status_code == 303
    after = client.get(f"/ui/sweeps/{sweep['id']}").text
    assert "4 of 4 jobs finished" in after and "every 3s" not in after and "Cancel the rest" not in after
    assert "/ui/sweeps" in client.get("/ui/sweeps").text and sweep["id"] in client.get("/ui/sweeps").text
