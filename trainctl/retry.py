"""The client's HTTP plumbing: requests retried where that is safe, problems as errors, downloads."""

from __future__ import annotations

import email.utils
import random
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

from trainctl.errors import ServerUnreachable, TrainctlError

RETRY_STATUSES = frozenset({503})


@dataclass(frozen=True)
class RetryPolicy:
    """Retry safe requests on connection errors and 503: exponential backoff with jitter, or the server's
    Retry-After, never past `total` seconds from the first try."""

    total: float = 30.0
    first_delay: float = 0.25
    max_delay: float = 8.0

    def delay(self, attempt: int, response: httpx.Response | None) -> float:
        """Seconds to wait before retry number `attempt` (1-based)."""
        hinted = retry_after(response) if response is not None else None
        if hinted is not None:
            return min(hinted, self.max_delay * 4)
        backoff = min(self.max_delay, self.first_delay * 2 ** (attempt - 1))
        return backoff * (0.5 + random.random() / 2)  # jitter: clients that failed together spread out


NO_RETRY = RetryPolicy(total=0.0)


def retry_after(response: httpx.Response) -> float | None:
    """The Retry-After header in seconds (delta-seconds or an HTTP date), or None."""
    value = response.headers.get("Retry-After")
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, (when - datetime.now(UTC)).total_seconds())


def is_retry_safe(method: str, headers: Mapping[str, str] | None) -> bool:
    """GETs, and POSTs that carry an Idempotency-Key (the server answers a repeat with the same job)."""
    if method.upper() in {"GET", "HEAD"}:
        return True
    return method.upper() == "POST" and any(k.lower() == "idempotency-key" for k in headers or {})


class HttpClient:
    """An httpx client whose failures are TrainctlError and whose safe requests are retried."""

    def __init__(
        self,
        url: str,
        headers: dict[str, str],
        timeout: float,
        retry: RetryPolicy,
        transport: httpx.BaseTransport | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.url = url
        self.retry = retry
        self._sleep = sleep
        self._http = httpx.Client(base_url=url, headers=headers, timeout=timeout, transport=transport)

    def close(self) -> None:
        """Close the connection pool."""
        self._http.close()

    def _with_retries(self, method: str, headers: Mapping[str, str] | None, send: Callable[[], Any]) -> Any:
        """send() until it answers something other than a connection error or 503, or time runs out."""
        start, slept = time.monotonic(), 0.0
        safe = is_retry_safe(method, headers)
        attempt = 0

        def out_of_time(wait: float) -> bool:
            return max(time.monotonic() - start, slept) + wait > self.retry.total

        while True:
            attempt += 1
            try:
                response = send()
            except httpx.TransportError as error:
                wait = self.retry.delay(attempt, None)
                if not safe or out_of_time(wait):
                    reason = type(error).__name__ + (f": {error}" if str(error) else "")
                    raise ServerUnreachable(self.url, reason) from error
            else:
                if not (safe and response.status_code in RETRY_STATUSES):
                    return response
                wait = self.retry.delay(attempt, response)
                if out_of_time(wait):
                    return response
                response.close()
            self._sleep(wait)
            slept += wait

    def request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        """One request (retried when safe); a problem answer raises TrainctlError."""
        response: httpx.Response = self._with_retries(
            method, kwargs.get("headers"), lambda: self._http.request(method, path, **kwargs)
        )
        if response.is_error:
            raise TrainctlError.from_response(response)
        return response

    def json(self, method: str, path: str, **kwargs: Any) -> Any:
        """The parsed JSON of a request."""
        return self.request(method, path, **kwargs).json()

    def save(self, path: str, target: str | Path, params: Mapping[str, Any] | None = None) -> Path:
        """Stream a GET into a file (written next to it first, so a failure leaves no half file)."""
        target = Path(target)
        partial = target.with_name(target.name + ".part")

        def download() -> httpx.Response:
            with self._http.stream("GET", path, params=params) as response:
                if response.is_error:
                    response.read()
                    return response
                with partial.open("wb") as handle:
                    for chunk in response.iter_bytes():
                        handle.write(chunk)
                return response

        try:
            response: httpx.Response = self._with_retries("GET", None, download)
        except ServerUnreachable:
            partial.unlink(missing_ok=True)
            raise
        if response.is_error:
            partial.unlink(missing_ok=True)
            raise TrainctlError.from_response(response)
        partial.replace(target)
        return target
