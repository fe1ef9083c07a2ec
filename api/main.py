"""The FastAPI application: create_app(settings) wires the database, artifacts, broker and routers."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware

from api.compare.router import router as compare_router
from api.datasets.router import router as datasets_router
from api.docs import install_docs
from api.errors import install_error_handlers
from api.events.router import router as events_router
from api.health.router import router as health_router
from api.jobs.router import router as jobs_router
from api.monitoring import RequestMiddleware, make_registry
from api.monitoring import router as monitoring_router
from api.openapi import install_openapi
from api.plots.router import router as plots_router
from api.specs.router import router as specs_router
from api.sweeps.router import router as sweeps_router
from api.ui import install_ui
from api.workers.router import router as workers_router
from core.artifacts import ArtifactStore
from core.broker import make_celery
from core.config import Settings, get_settings
from core.db import engine_for, make_session_factory

DESCRIPTION = """
Train neural networks as a service. Submit a **job spec** (network, activation, initialization,
normalization, optimizer, clipping, early stopping, L2, dropout), watch per-epoch metrics and
per-layer diagnostics, download checkpoints, and get predictions.

Every `/v1` endpoint except `/v1/health` needs `Authorization: Bearer <key>`
(`trainctl keys create --owner NAME`). Errors are `application/problem+json`.
"""

OPENAPI_TAGS = [
    {"name": "jobs", "description": "Submit, list, watch, cancel and delete training jobs."},
    {"name": "sweeps", "description": "Run one spec over a grid of values × seeds, as a batch of jobs."},
    {
        "name": "compare",
        "description": "Jobs side by side: spec diff, seed groups with 95% CIs, tests against the best, "
        "effects of swept fields, curve bands, plots.",
    },
    {"name": "specs", "description": "Check a job spec without creating anything."},
    {"name": "datasets", "description": "Upload CSV or NPZ datasets and refer to them from specs."},
    {"name": "workers", "description": "The Celery workers seen recently and the jobs they train."},
    {"name": "health", "description": "Liveness of the database, broker and workers."},
    {"name": "monitoring", "description": "Prometheus metrics."},
]


def create_app(settings: Settings | None = None) -> FastAPI:
    """Build the app for `settings` (default: the process settings); the schema must already be migrated."""
    settings = settings or get_settings()
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    engine = engine_for(settings)
    session_factory = make_session_factory(engine)
    celery_app = make_celery(settings)

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        yield
        hub = getattr(_app.state, "event_hub", None)
        if hub is not None:
            await hub.close()
        celery_app.close()
        engine.dispose()

    app = FastAPI(
        title="trainctl",
        version="0.1.0",
        description=DESCRIPTION,
        openapi_tags=OPENAPI_TAGS,
        lifespan=lifespan,
        docs_url=None,  # install_docs serves /docs and /redoc from installed assets, not a CDN
        redoc_url=None,
    )
    app.state.settings = settings
    app.state.engine = engine
    app.state.session_factory = session_factory
    app.state.artifacts = ArtifactStore(settings.resolved_artifacts_url)
    app.state.celery = celery_app
    registry, latency = make_registry(session_factory)
    app.state.metrics_registry = registry

    install_error_handlers(app)
    install_docs(app)
    install_openapi(app)
    install_ui(app, settings)
    routers = (jobs_router, events_router, plots_router, sweeps_router, compare_router)
    for router in (*routers, specs_router, datasets_router, workers_router, health_router, monitoring_router):
        app.include_router(router)

    # Added last so it runs first: the body limit applies before anything reads the body.
    app.add_middleware(RequestMiddleware, max_body_bytes=settings.max_request_bytes, latency=latency)
    if settings.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.cors_origins,
            allow_methods=["GET", "POST", "PATCH", "DELETE"],
            allow_headers=["Authorization", "Content-Type", "Idempotency-Key"],
        )
    return app
