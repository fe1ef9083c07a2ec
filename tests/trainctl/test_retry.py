"""The client retries what is safe to retry, honours Retry-After, and gives up within its time budget."""

from __future__ import annotations

import httpx
import pytest

from trainctl.client import Client, RetryPolicy, ServerUnreachable, TrainctlError
from trainctl.retry import HttpClient, retry_after

JOB = {"id": "job_1", "status": "queued", "progress": {"epoch": 0, "epochs": 1}}


def scripted(*answers: int | type[Exception]) -> tuple[httpx.MockTransport, list[httpx.Request]]:
    """A transport that answers each request with the next status (503 carries Retry-After: 2) or error."""
    seen: list[httpx.Request] = []
    queue = list(answers)

    def handle(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        answer = queue.pop(0) if queue else 200
        if isinstance(answer, type):
            raise answer("no connection", request=request)
        if answer == 503:
            return httpx.Response(503, headers={"Retry-After": "2"}, json={"title": "Service unavailable"})
        return httpx.Response(answer, json=JOB)

    return httpx.MockTransport(handle), seen


def client_with(transport: httpx.MockTransport, total: float = 30.0) -> tuple[Client, list[float]]:
    slept: list[float] = []
    client = Client("http://test", "k", retry=RetryPolicy(total=total), transport=transport)
    client._api._sleep = slept.append  # waits are recorded, not slept
    return client, slept


def test_get_is_retried_on_503_and_connection_errors_honouring_retry_after() -> None:
    transport, seen = scripted(503, httpx.ConnectError, 200)
    client, slept = client_with(transport)
    assert client.get("job_1") == JOB
    assert len(seen) == 3 and slept[0] == 2.0 and 0 < slept[1] <= 0.5  # Retry-After, then backoff


def test_submit_carries_one_idempotency_key_across_retries() -> None:
    transport, seen = scripted(httpx.ReadTimeout, 503, 202)
    client, _slept = client_with(transport)
    client.submit({"dataset": {"name": "iris"}})
    keys = {request.headers["Idempotency-Key"] for request in seen}
    assert len(seen) == 3 and len(keys) == 1 and next(iter(keys)).startswith("trainctl-")


def test_unsafe_requests_are_not_retried() -> None:
    transport, seen = scripted(httpx.ConnectError)
    client, _slept = client_with(transport)
    with pytest.raises(ServerUnreachable):
        client.cancel("job_1")
    transport, seen = scripted(503)
    client, _slept = client_with(transport)
    with pytest.raises(TrainctlError) as refused:
        client.update("job_1", notes="x")
    assert refused.value.status == 503 and len(seen) == 1


def test_retries_stop_within_the_total_time() -> None:
    transport, seen = scripted(*[503] * 50)
    client, slept = client_with(transport, total=5.0)
    with pytest.raises(TrainctlError) as gave_up:
        client.get("job_1")
    assert gave_up.value.status == 503 and sum(slept) <= 5.0 and len(seen) == 3  # 2 s + 2 s, then no room


def test_retry_after_reads_seconds_and_http_dates() -> None:
    assert retry_after(httpx.Response(503, headers={"Retry-After": "7"})) == 7.0
    assert retry_after(httpx.Response(503, headers={"Retry-After": "Wed, 21 Oct 2015 07:28:00 GMT"})) == 0.0
    assert retry_after(httpx.Response(503)) is None
    assert HttpClient  # the plumbing the Client is built on
