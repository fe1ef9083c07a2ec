"""Domain errors and their one rendering: application/problem+json (RFC 9457)."""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field
from sqlalchemy.exc import DataError, DBAPIError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import BaseRoute, Match

from training.spec import FieldError, describe_errors

log = logging.getLogger(__name__)

PROBLEM_MEDIA_TYPE = "application/problem+json"
DATABASE_RETRY_AFTER_SECONDS = 5
HTTP_METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE")
MAX_ECHO_CHARS = 1000  # of a detail, field or message: bad values are echoed, but not megabytes of them
MAX_ERRORS = 50  # entries in `errors`; the count of the rest is not worth a large response
# Where FastAPI says a bad value came from; the field path a person sees starts after it.
_REQUEST_PARTS = frozenset({"body", "query", "path", "header", "cookie"})


class AppError(Exception):
    """A failure a client can act on; the handler turns it into a problem response."""

    status: int = 500
    title: str = "Internal server error"
    slug: str = "internal"

    def __init__(
        self,
        detail: str,
        *,
        errors: list[FieldError] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(detail)
        self.detail = detail
        self.errors = errors
        self.headers = headers or {}

    @classmethod
    def for_field(cls, field: str, message: str) -> AppError:
        """An error about one field: the detail and the errors list both name it."""
        return cls(f"{field}: {message}", errors=[FieldError(field=field, message=message)])


class NotFound(AppError):
    """The resource does not exist, or belongs to another owner (the two look the same)."""

    status, title, slug = 404, "Not found", "not-found"


class Conflict(AppError):
    """The request is valid but clashes with the resource's current state."""

    status, title, slug = 409, "Conflict", "conflict"


class Unprocessable(AppError):
    """The request is well-formed but a value is not acceptable."""

    status, title, slug = 422, "Invalid request", "invalid-request"


class PayloadTooLarge(AppError):
    """The request body or upload is over the configured limit."""

    status, title, slug = 413, "Payload too large", "payload-too-large"


class TooManyRequests(AppError):
    """The owner is over a quota; retry once some of their work has finished."""

    status, title, slug = 429, "Too many requests", "too-many-requests"

    def __init__(self, detail: str, *, retry_after: int = 30) -> None:
        super().__init__(detail, headers={"Retry-After": str(retry_after)})


class Unauthorized(AppError):
    """No key, an unknown key or a revoked key."""

    status, title, slug = 401, "Unauthorized", "unauthorized"

    def __init__(self, detail: str) -> None:
        super().__init__(detail, headers={"WWW-Authenticate": "Bearer"})


class Problem(BaseModel):
    """An RFC 9457 problem: what went wrong and, for bad input, which fields."""

    type: str = Field(examples=["urn:trainctl:problem:invalid-request"])
    title: str = Field(examples=["Invalid request"])
    status: int = Field(examples=[422])
    detail: str = Field(examples=["spec.optimizer.learning_rate: Input should be greater than 0"])
    errors: list[FieldError] | None = Field(None, description="One entry per invalid field.")


_STATUS_TEXT = {
    401: "No key, an unknown key or a revoked key.",
    404: "No such resource, or it belongs to another owner.",
    409: "The request clashes with the resource's current state.",
    413: "The body or upload is over the configured limit.",
    422: "A value is not acceptable; `errors` names the fields.",
    429: "Over a per-owner quota; retry after Retry-After seconds.",
    503: "The database is unreachable; retry after Retry-After seconds.",
}


# One example body per status, so that Swagger UI and generated clients show the problem each one answers
# (without them every status would show the schema's own 422 example).
_STATUS_EXAMPLE: dict[int, tuple[str, str, str]] = {
    401: ("unauthorized", "Unauthorized", "Unknown API key. Send 'Authorization: Bearer <key>'."),
    404: ("not-found", "Not found", "no job with id 'job_3f9c1a2b4d5e6f70'"),
    409: ("conflict", "Conflict", "job job_3f9c1a2b4d5e6f70 is running; cancel it and wait for it to end"),
    413: ("payload-too-large", "Payload too large", "over 52428800 bytes (TRAINCTL_MAX_UPLOAD_BYTES)"),
    422: (
        "invalid-request",
        "Invalid request",
        "spec.optimizer.learning_rate: Input should be greater than 0",
    ),
    429: ("too-many-requests", "Too many requests", "100 queued jobs (TRAINCTL_MAX_QUEUED_JOBS_PER_OWNER)"),
    503: ("service-unavailable", "Service unavailable", "The database is unreachable; retry shortly."),
}


def problem_example(status: int) -> dict[str, Any]:
    """A typical problem body of `status`."""
    slug, title, detail = _STATUS_EXAMPLE[status]
    example: dict[str, Any] = {"type": f"urn:trainctl:problem:{slug}", "title": title, "status": status}
    example["detail"] = detail
    if status == 422:
        example["errors"] = [
            {"field": "spec.optimizer.learning_rate", "message": "Input should be greater than 0"}
        ]
    return example


def problem_responses(
    *statuses: int, success: dict[str, Any] | None = None
) -> dict[int | str, dict[str, Any]]:
    """OpenAPI entries for problem responses (401, 422 and 503 always), plus an optional 200 entry."""
    responses: dict[int | str, dict[str, Any]] = {200: success} if success else {}
    return responses | {
        status: {
            "model": Problem,
            "description": _STATUS_TEXT[status],
            "content": {
                PROBLEM_MEDIA_TYPE: {
                    "schema": {"$ref": "#/components/schemas/Problem"},
                    "example": problem_example(status),
                }
            },
        }
        for status in sorted({401, 422, 503, *statuses})
    }


PROBLEM_RESPONSES = problem_responses()


def shorten(text: str, limit: int = MAX_ECHO_CHARS) -> str:
    """Text cut to `limit` characters: a problem never echoes a huge bad value back in full."""
    if len(text) <= limit:
        return text
    return f"{text[:limit]}… ({len(text) - limit:,} more characters)"


def problem_response(
    *,
    status: int,
    title: str,
    detail: str,
    slug: str,
    errors: list[FieldError] | None = None,
    headers: dict[str, str] | None = None,
) -> JSONResponse:
    """A problem+json response."""
    body: dict[str, Any] = {"type": f"urn:trainctl:problem:{slug}", "title": title, "status": status}
    body["detail"] = shorten(detail)
    if errors:
        body["errors"] = [
            {"field": shorten(error.field), "message": shorten(error.message)}
            for error in errors[:MAX_ERRORS]
        ]
    return JSONResponse(body, status_code=status, headers=headers, media_type=PROBLEM_MEDIA_TYPE)


def _app_error(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, AppError)
    return problem_response(
        status=exc.status,
        title=exc.title,
        detail=exc.detail,
        slug=exc.slug,
        errors=exc.errors,
        headers=exc.headers,
    )


def _validation_error(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    raw = []
    for error in exc.errors():
        loc = list(error.get("loc", ()))
        if loc and loc[0] in _REQUEST_PARTS:
            # ("body", 0) is a body that is not JSON at all: name the body itself.
            loc = loc[1:] if len(loc) > 1 and isinstance(loc[1], str) else loc[:1]
        raw.append({**error, "loc": tuple(loc)})
    errors = describe_errors(raw)
    detail = "; ".join(f"{error.field}: {error.message}" for error in errors[:5])
    return problem_response(
        status=422, title="Invalid request", detail=detail, slug="invalid-request", errors=errors
    )


def _allowed_methods(request: Request) -> str:
    """Every method some route answers on this path (Starlette's Allow names the first route's only)."""
    routes: list[BaseRoute] = request.app.router.routes
    return ", ".join(
        method
        for method in HTTP_METHODS
        if any(route.matches({**request.scope, "method": method})[0] == Match.FULL for route in routes)
    )


def _http_error(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    if exc.status_code == 400:
        # FastAPI's own "error parsing the body" (bytes that are not UTF-8 JSON, a broken multipart form):
        # a bad value like any other, so the same 422 that a body that is not JSON at all gets.
        message = str(exc.detail)
        return problem_response(
            status=422,
            title="Invalid request",
            detail=f"body: {message}",
            slug="invalid-request",
            errors=[FieldError(field="body", message=message)],
        )
    title = {404: "Not found", 405: "Method not allowed"}.get(exc.status_code, "HTTP error")
    headers = dict(exc.headers or {})
    if exc.status_code == 405:
        headers["Allow"] = _allowed_methods(_request) or headers.get("Allow", "")
    return problem_response(
        status=exc.status_code,
        title=title,
        detail=str(exc.detail),
        slug=title.lower().replace(" ", "-"),
        headers=headers,
    )


def _database_unavailable(_request: Request, exc: Exception) -> JSONResponse:
    if isinstance(exc, DataError):
        return _value_not_storable(_request, exc)
    if (
        isinstance(exc, DBAPIError)
        and not isinstance(exc, OperationalError)
        and not exc.connection_invalidated
    ):
        return _unexpected(_request, exc)
    # The message may hold host names; it goes to the log, not to the client.
    log.warning("database unavailable: %s", type(exc.orig if isinstance(exc, DBAPIError) else exc).__name__)
    return problem_response(
        status=503,
        title="Service unavailable",
        detail="The database is unreachable or busy; retry shortly.",
        slug="service-unavailable",
        headers={"Retry-After": str(DATABASE_RETRY_AFTER_SECONDS)},
    )


def _value_not_storable(_request: Request, exc: Exception) -> JSONResponse:
    # The database refused a value that passed validation (a NUL character in text, a number out of range).
    log.info("value refused by the database: %s", type(exc).__name__)
    return problem_response(
        status=422,
        title="Invalid request",
        detail="A value in the request cannot be stored or compared: text may not contain NUL characters "
        "and numbers must be within range.",
        slug="invalid-request",
    )


def _unexpected(_request: Request, exc: Exception) -> JSONResponse:
    log.exception("unhandled error", exc_info=exc)
    return problem_response(
        status=500,
        title="Internal server error",
        detail="An unexpected error occurred; it has been logged.",
        slug="internal",
    )


def install_error_handlers(app: FastAPI) -> None:
    """Render every error the app can raise as problem+json."""
    app.add_exception_handler(AppError, _app_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(OperationalError, _database_unavailable)
    app.add_exception_handler(DBAPIError, _database_unavailable)
    app.add_exception_handler(PoolTimeoutError, _database_unavailable)
    app.add_exception_handler(Exception, _unexpected)
