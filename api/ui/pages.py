"""What every dashboard page shares: templates, the session and CSRF dependencies, and HTML errors.

Routes of the dashboard use HtmlRoute: a domain error becomes an HTML page with the same status (a
missing or foreign id is a 404 page), an unexpected one a 500 page without a traceback, and every answer
carries the strict Content-Security-Policy (scripts and styles from this server only, nothing inline).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Coroutine
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import urlencode

from fastapi import Depends, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, RedirectResponse
from fastapi.routing import APIRoute
from fastapi.templating import Jinja2Templates
from jinja2 import Undefined
from pydantic import BaseModel
from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError
from starlette.datastructures import FormData
from starlette.exceptions import HTTPException as StarletteHTTPException

from api.deps import SessionDep
from api.errors import AppError
from api.ui.session import COOKIE_NAME, CSRF_FIELD, SessionCodec, UiSession, anonymous, still_valid
from training.spec import describe_errors

log = logging.getLogger(__name__)

HERE = Path(__file__).parent
templates = Jinja2Templates(directory=HERE / "templates")
CONTENT_SECURITY_POLICY = "; ".join(
    [
        "default-src 'self'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self'",
        "connect-src 'self'",
        "font-src 'self'",
        "object-src 'none'",
        "base-uri 'none'",
        "form-action 'self'",
        "frame-ancestors 'none'",
    ]
)
SECURITY_HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "X-Frame-Options": "DENY",
}


class SignInRequired(Exception):
    """No valid session: the page redirects to the sign-in form."""


class CsrfRejected(AppError):
    """A form without this session's CSRF token (stale page, or another site posting)."""

    status, title, slug = 403, "Form expired", "csrf"


def codec(request: Request) -> SessionCodec:
    """The app's cookie codec (made by install_ui)."""
    value: SessionCodec = request.app.state.ui_codec
    return value


def current_session(request: Request) -> UiSession:
    """The visitor's session; an anonymous one (to be set as a cookie) when there is none."""
    found = getattr(request.state, "ui_session", None)
    if isinstance(found, UiSession):
        return found
    session = codec(request).loads(request.cookies.get(COOKIE_NAME))
    if session is None:
        session = anonymous()
        request.state.set_session = session
    request.state.ui_session = session
    return session


def signed_in(request: Request, db: SessionDep) -> UiSession:
    """The session of a signed-in owner whose key is still valid; SignInRequired otherwise."""
    session = current_session(request)
    if session.owner is None or not still_valid(db, session):
        raise SignInRequired
    return session


UserDep = Annotated[UiSession, Depends(signed_in)]


async def checked_form(request: Request) -> FormData:
    """The posted form, once its CSRF token matches the session's; 403 otherwise."""
    form = await request.form()
    token = form.get(CSRF_FIELD)
    if not current_session(request).csrf_matches(token if isinstance(token, str) else None):
        raise CsrfRejected("This form has expired or did not come from this dashboard; reload and retry.")
    return form


FormDep = Annotated[FormData, Depends(checked_form)]


def field(form: FormData, name: str) -> str:
    """A text field of a form ('' when absent or a file)."""
    value = form.get(name)
    return value if isinstance(value, str) else ""


def render(request: Request, template: str, /, status_code: int = 200, **context: Any) -> HTMLResponse:
    """A page or fragment, with the session's owner and CSRF token available to the template."""
    session = current_session(request)
    context |= {"owner": session.owner, "csrf_token": session.csrf, "csrf_field": CSRF_FIELD}
    return templates.TemplateResponse(request, template, context, status_code=status_code)


def error_page(request: Request, status: int, title: str, detail: str) -> HTMLResponse:
    """The HTML error page (never a traceback)."""
    return render(request, "error.html", status_code=status, title=title, detail=detail, status=status)


def redirect(request: Request, url: str) -> Response:
    """303 to `url`; htmx requests get HX-Redirect so the whole page moves, not a fragment."""
    if request.headers.get("HX-Request"):
        return Response(status_code=200, headers={"HX-Redirect": url})
    return RedirectResponse(url, status_code=303)


def _validation_page(request: Request, error: RequestValidationError) -> HTMLResponse:
    errors = list(error.errors())
    if any(tuple(item.get("loc", ()))[:1] == ("path",) for item in errors):
        return error_page(request, 404, "Not found", "There is nothing at this address.")
    found = describe_errors([{**item, "loc": tuple(item.get("loc", ()))[1:]} for item in errors])
    detail = "; ".join(f"{item.field}: {item.message}" for item in found[:5])
    return error_page(request, 422, "Invalid request", detail)


async def _answer(request: Request, handler: Callable[[Request], Coroutine[Any, Any, Response]]) -> Response:
    try:
        return await handler(request)
    except SignInRequired:
        return redirect(request, "/ui/signin")
    except AppError as error:
        return error_page(request, error.status, error.title, error.detail)
    except RequestValidationError as error:
        return _validation_page(request, error)
    except StarletteHTTPException as error:
        return error_page(request, error.status_code, "Error", str(error.detail))
    except (OperationalError, PoolTimeoutError, DBAPIError) as error:
        log.warning("dashboard: database error %s", type(error).__name__)
        return error_page(request, 503, "Service unavailable", "The database is unreachable; retry shortly.")
    except Exception:
        log.exception("dashboard: unhandled error on %s", request.url.path)
        return error_page(request, 500, "Something went wrong", "An unexpected error occurred; it is logged.")


class HtmlRoute(APIRoute):
    """A dashboard route: HTML errors, security headers, and the session cookie kept up to date."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def html_handler(request: Request) -> Response:
            response = await _answer(request, handler)
            for name, value in SECURITY_HEADERS.items():
                response.headers.setdefault(name, value)
            if response.media_type is None or response.media_type.startswith("text/html"):
                response.headers.setdefault("Cache-Control", "no-store")
            _write_cookie(request, response)
            return response

        return html_handler


def _write_cookie(request: Request, response: Response) -> None:
    """Set the session request.state.set_session names, or delete the cookie on sign-out."""
    if getattr(request.state, "clear_session", False):
        response.delete_cookie(COOKIE_NAME, path="/ui", httponly=True, samesite="strict")
        return
    session = getattr(request.state, "set_session", None)
    if isinstance(session, UiSession):
        response.set_cookie(
            COOKIE_NAME,
            codec(request).dumps(session),
            max_age=codec(request).max_age,
            path="/ui",
            httponly=True,
            samesite="strict",
            secure=request.url.scheme == "https",
        )


def fmt_seconds(seconds: float | None) -> str:
    """12 s, 3 min 5 s, 2 h 4 min."""
    if seconds is None:
        return "—"
    seconds = max(float(seconds), 0.0)
    if seconds < 60:
        return f"{seconds:.0f} s" if seconds >= 10 else f"{seconds:.1f} s"
    minutes, rest = divmod(round(seconds), 60)
    if minutes < 60:
        return f"{minutes} min {rest} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes} min"


def fmt_number(value: Any) -> str:
    """Four significant digits for floats, as-is otherwise, '—' for nothing."""
    if value is None or isinstance(value, Undefined):
        return "—"
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def fmt_time(value: datetime | None) -> str:
    """UTC, to the second."""
    return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S") if value else "—"


def as_dict(value: Any) -> dict[str, Any]:
    """A pydantic model (a spec, an epoch record), a dict or None, as a plain JSON-ready dict."""
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json", exclude_none=True)
    return dict(value) if isinstance(value, dict) else {}


def dict2query(values: dict[str, Any]) -> str:
    """The non-empty values as a query string."""
    return urlencode({name: value for name, value in values.items() if value})


templates.env.filters |= {
    "seconds": fmt_seconds,
    "num": fmt_number,
    "utc": fmt_time,
    "dict2query": dict2query,
    "as_dict": as_dict,
}
