"""/docs (Swagger UI) and /redoc served with no internet: their assets come from an installed package."""

from __future__ import annotations

from functools import cache
from importlib.resources import files
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html
from fastapi.responses import HTMLResponse, Response
from fastapi.staticfiles import StaticFiles

DOCS_ASSETS_URL = "/docs-assets"
# The fastapi-offline wheel ships swagger-ui-bundle.js, swagger-ui.css (Apache-2.0), redoc.standalone.js
# (MIT) and FastAPI's favicon; only its files are used, not its app factory.
ASSETS_DIR = Path(str(files("fastapi_offline") / "static"))
SWAGGER_UI_PARAMETERS = {
    "persistAuthorization": True,  # the key survives a reload of the page
    "displayRequestDuration": True,
    "defaultModelsExpandDepth": 0,  # the schemas are long; operations first
    "docExpansion": "list",
    "filter": True,
    "validatorUrl": None,  # never ask an online validator
}
# The pages may load nothing from another host: ReDoc's bundle, for one, always asks a CDN for its logo.
CONTENT_SECURITY_POLICY = "; ".join(
    [
        "default-src 'self'",
        "script-src 'self' 'unsafe-inline'",  # the inline script that starts Swagger UI
        "style-src 'self' 'unsafe-inline'",
        "img-src 'self' data: blob:",  # Swagger UI shows image responses (the plots) as blob: URLs
        "font-src 'self' data:",
        "connect-src 'self'",
        "worker-src 'self' blob:",  # ReDoc's search worker
        "frame-ancestors 'self'",
    ]
)


REDOC_LOGO_URL = b"https://cdn.redoc.ly/redoc/logo-mini.svg"


@cache
def redoc_bundle() -> bytes:
    """ReDoc's bundle with its one runtime fetch from a CDN (a logo) made an empty image it then hides."""
    return (ASSETS_DIR / "redoc.standalone.js").read_bytes().replace(REDOC_LOGO_URL, b"data:,")


def _offline(page: HTMLResponse) -> HTMLResponse:
    page.headers["Content-Security-Policy"] = CONTENT_SECURITY_POLICY
    return page


def install_docs(app: FastAPI) -> None:
    """Mount the assets and the /docs and /redoc pages (the app must be built with docs_url=None)."""

    @app.get(f"{DOCS_ASSETS_URL}/redoc.standalone.js", include_in_schema=False)
    def redoc_js() -> Response:  # registered before the mount, so it answers first
        return Response(
            redoc_bundle(),
            media_type="text/javascript; charset=utf-8",
            headers={"Cache-Control": "public, max-age=3600"},
        )

    app.mount(DOCS_ASSETS_URL, StaticFiles(directory=ASSETS_DIR), name="docs-assets")
    openapi_url = app.openapi_url or "/openapi.json"

    @app.get("/docs", include_in_schema=False)
    def swagger_ui(request: Request) -> HTMLResponse:
        root = request.scope.get("root_path", "")
        return _offline(
            get_swagger_ui_html(
                openapi_url=f"{root}{openapi_url}",
                title=f"{app.title} — API",
                swagger_js_url=f"{root}{DOCS_ASSETS_URL}/swagger-ui-bundle.js",
                swagger_css_url=f"{root}{DOCS_ASSETS_URL}/swagger-ui.css",
                swagger_favicon_url=f"{root}{DOCS_ASSETS_URL}/favicon.png",
                swagger_ui_parameters=SWAGGER_UI_PARAMETERS,
            )
        )

    @app.get("/redoc", include_in_schema=False)
    def redoc(request: Request) -> HTMLResponse:
        root = request.scope.get("root_path", "")
        return _offline(
            get_redoc_html(
                openapi_url=f"{root}{openapi_url}",
                title=f"{app.title} — API reference",
                redoc_js_url=f"{root}{DOCS_ASSETS_URL}/redoc.standalone.js",
                redoc_favicon_url=f"{root}{DOCS_ASSETS_URL}/favicon.png",
                with_google_fonts=False,
            )
        )
