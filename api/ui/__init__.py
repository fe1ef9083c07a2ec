"""The dashboard for people under /ui: server-rendered pages, htmx for live updates, no CDN."""

from __future__ import annotations

from fastapi import FastAPI
from fastapi.responses import RedirectResponse
from fastapi.staticfiles import StaticFiles

from api.ui import account, jobs, submit, sweeps
from api.ui.pages import HERE
from api.ui.session import SessionCodec, load_secret
from core.config import Settings


def install_ui(app: FastAPI, settings: Settings) -> None:
    """Mount the static files and the pages, and send `/` to `/ui`."""
    app.state.ui_codec = SessionCodec(load_secret(settings), max_age=settings.session_max_age)
    app.mount("/ui/static", StaticFiles(directory=HERE / "static"), name="ui-static")
    for router in (account.router, jobs.router, sweeps.router, submit.router, account.fallback):
        app.include_router(router)

    @app.get("/", include_in_schema=False)
    def home() -> RedirectResponse:
        return RedirectResponse("/ui", status_code=307)
