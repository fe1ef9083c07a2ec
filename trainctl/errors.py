"""What the client raises: an API problem (with its field errors), an unreachable server, a wait run out."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import httpx


@dataclass(frozen=True)
class FieldProblem:
    """One invalid field named by the server."""

    field: str
    message: str

    def __str__(self) -> str:
        return f"{self.field}: {self.message}"


class TrainctlError(Exception):
    """A problem the server answered (application/problem+json), or no answer at all (status 0)."""

    def __init__(
        self, status: int, title: str, detail: str = "", errors: Iterable[FieldProblem] = ()
    ) -> None:
        self.status, self.title, self.detail = status, title, detail
        self.errors = list(errors)
        super().__init__(str(self))

    def __str__(self) -> str:
        head = f"{self.title} ({self.status})" if self.status else self.title
        if self.errors:
            return "\n".join([head, *(f"  {error}" for error in self.errors)])
        return f"{head}: {self.detail}" if self.detail else head

    @classmethod
    def from_response(cls, response: httpx.Response) -> TrainctlError:
        """Read a problem+json body (or whatever the server sent) into an error."""
        try:
            body = response.json()
        except ValueError:
            body = None
        if not isinstance(body, dict):
            text = response.text.strip()[:500]
            return cls(response.status_code, response.reason_phrase or "HTTP error", text)
        errors = [
            FieldProblem(str(item.get("field", "")), str(item.get("message", "")))
            for item in body.get("errors") or []
            if isinstance(item, dict)
        ]
        title = str(body.get("title") or response.reason_phrase or "HTTP error")
        detail = body.get("detail")
        return cls(response.status_code, title, "" if detail is None else str(detail), errors)


class ServerUnreachable(TrainctlError):
    """No answer from the server: it is not running, or the URL is wrong."""

    def __init__(self, url: str, reason: str) -> None:
        super().__init__(0, f"Cannot reach the trainctl server at {url}", reason)

    def __str__(self) -> str:
        return f"{self.title} ({self.detail}); is `trainctl serve` running? Set --url or TRAINCTL_URL."


class WaitTimeout(TimeoutError):
    """A job or sweep did not finish within the time given to wait()."""

    def __init__(self, what: str, timeout: float, last: Mapping[str, Any]) -> None:
        self.last = dict(last)
        status = last.get("status") or last.get("counts")
        super().__init__(f"{what} did not finish within {timeout:g} s (last seen: {status})")
