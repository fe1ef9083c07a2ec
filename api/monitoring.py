"""Prometheus: request latency by route template, and job gauges computed from the database at scrape."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator

from fastapi import APIRouter, Request, Response
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector
from sqlalchemy import func, select
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api.errors import problem_response
from core.models import EpochMetric, Job, JobStatus

log = logging.getLogger(__name__)


class JobCollector(Collector):
    """Jobs by status, queue depth and epochs trained, read from the database when scraped."""

    def __init__(self, session_factory: sessionmaker[Session]) -> None:
        self.session_factory = session_factory

    def collect(self) -> Iterator[GaugeMetricFamily]:
        """Query the database; a scrape while it is down reports trainctl_database_up 0."""
        up = GaugeMetricFamily("trainctl_database_up", "1 when the database answered this scrape.")
        try:
            with self.session_factory() as session:
                by_status = dict(session.execute(select(Job.status, func.count()).group_by(Job.status)).all())
                epochs = session.scalar(select(func.count()).select_from(EpochMetric)) or 0
        except SQLAlchemyError as error:
            log.warning("metrics scrape without database: %s", type(error).__name__)
            up.add_metric([], 0)
            yield up
            return
        up.add_metric([], 1)
        yield up
        jobs = GaugeMetricFamily("trainctl_jobs", "Jobs by status.", labels=["status"])
        for status in JobStatus:
            jobs.add_metric([status.value], by_status.get(status.value, 0))
        yield jobs
        yield GaugeMetricFamily(
            "trainctl_queue_depth",
            "Jobs queued and not yet claimed by a worker.",
            value=by_status.get("queued", 0),
        )
        yield GaugeMetricFamily(
            "trainctl_epochs_trained", "Epochs trained, over the jobs still stored.", value=epochs
        )


def make_registry(session_factory: sessionmaker[Session]) -> tuple[CollectorRegistry, Histogram]:
    """A registry per app (so tests can build several apps) and its latency histogram."""
    registry = CollectorRegistry()
    registry.register(JobCollector(session_factory))
    latency = Histogram(
        "trainctl_http_request_duration_seconds",
        "HTTP request latency by route template.",
        labelnames=["method", "route", "status"],
        registry=registry,
    )
    return registry, latency


class RequestMiddleware:
    """Refuses bodies over the size limit before they are read, and times every request."""

    def __init__(self, app: ASGIApp, *, max_body_bytes: int, latency: Histogram) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes
        self.latency = latency

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500
        limit = self.max_body_bytes

        async def send_with_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            await self._too_large(scope, receive, send_with_status)
        elif declared is None and scope["method"] in ("POST", "PUT", "PATCH"):
            # A chunked body has no length to check: read it here (up to the limit), then replay it.
            buffered = await self._read_limited(receive)
            if buffered is None:
                await self._too_large(scope, receive, send_with_status)
            else:

                async def replay() -> Message:
                    return buffered.pop(0) if buffered else await receive()

                await self.app(scope, replay, send_with_status)
        else:
            await self.app(scope, receive, send_with_status)
        route = scope.get("route")
        template = getattr(route, "path", None) or "unmatched"
        self.latency.labels(scope["method"], template, str(status)).observe(time.perf_counter() - started)

    async def _read_limited(self, receive: Receive) -> list[Message] | None:
        """The body's messages, or None as soon as it passes the limit."""
        messages: list[Message] = []
        received = 0
        while True:
            message = await receive()
            messages.append(message)
            if message["type"] != "http.request":
                return messages
            received += len(message.get("body", b""))
            if received > self.max_body_bytes:
                return None
            if not message.get("more_body", False):
                return messages

    async def _too_large(self, scope: Scope, receive: Receive, send: Send) -> None:
        response = problem_response(
            status=413,
            title="Payload too large",
            detail=_limit_message(self.max_body_bytes),
            slug="payload-too-large",
            headers={"Connection": "close"},
        )
        await response(scope, receive, send)


def _limit_message(limit: int) -> str:
    return f"The request body is larger than the limit of {limit} bytes (TRAINCTL_MAX_REQUEST_BYTES)."


router = APIRouter(tags=["monitoring"])


@router.get(
    "/metrics",
    operation_id="get_prometheus_metrics",
    summary="Prometheus metrics",
    description="Jobs by status, queue depth, epochs trained and request latency, in Prometheus text format. "
    "No authentication: expose it only to your monitoring network.",
    response_class=Response,
    responses={
        200: {
            "content": {CONTENT_TYPE_LATEST: {"schema": {"type": "string"}}},
            "description": "Prometheus text exposition.",
        }
    },
)
def prometheus_metrics(request: Request) -> Response:
    """Render the app's registry."""
    return Response(generate_latest(request.app.state.metrics_registry), media_type=CONTENT_TYPE_LATEST)
