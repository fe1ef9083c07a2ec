"""Signing in with an API key (posted once, never echoed or stored), signing out, and unknown pages."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response

from api.deps import SessionDep
from api.errors import Unauthorized
from api.ui.pages import FormDep, HtmlRoute, current_session, error_page, field, redirect, render
from api.ui.session import sign_in, still_valid

router = APIRouter(prefix="/ui", route_class=HtmlRoute, include_in_schema=False)
fallback = APIRouter(prefix="/ui", route_class=HtmlRoute, include_in_schema=False)


@router.get("/signin")
def signin_page(request: Request, session: SessionDep, signed_out: bool = False) -> Response:
    """The sign-in form (signed-in visitors go to their jobs)."""
    current = current_session(request)
    if current.owner is not None and still_valid(session, current):
        return redirect(request, "/ui")
    return render(request, "signin.html", signed_out=signed_out)


@router.post("/signin")
def signin(request: Request, session: SessionDep, form: FormDep) -> Response:
    """Check the key; a valid one starts a fresh session (new cookie, new CSRF token)."""
    try:
        started = sign_in(session, secret=field(form, "api_key")[:1000])
    except Unauthorized as error:
        return render(request, "signin.html", status_code=401, problem=error.detail.split(" Send ")[0])
    request.state.set_session = request.state.ui_session = started
    return redirect(request, "/ui")


@router.post("/signout")
def signout(request: Request, _form: FormDep) -> Response:
    """Forget the session: the cookie is deleted."""
    request.state.clear_session = True
    return redirect(request, "/ui/signin?signed_out=true")


@fallback.get("/{path:path}")
def not_found(request: Request, path: str) -> Response:
    """Anything else under /ui."""
    if not path:  # /ui/
        return redirect(request, "/ui")
    return error_page(request, 404, "Not found", "There is nothing at this address.")
