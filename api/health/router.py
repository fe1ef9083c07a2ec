"""GET /v1/health."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response

from api.deps import SessionDep, SettingsDep
from api.errors import DATABASE_RETRY_AFTER_SECONDS
from api.health.schemas import HealthReport
from api.health.service import health_report

router = APIRouter(prefix="/v1", tags=["health"])


@router.get(
    "/health",
    operation_id="get_health",
    summary="Service health",
    description="Checks the database (SELECT 1) and the broker (a connection with a short timeout), "
    "and lists workers that sent a heartbeat within twice the heartbeat timeout. "
    "200 when the database answers, else 503. No authentication; a worker's current job id is shown "
    "only to that job's owner (with their key), never without one.",
    response_model=HealthReport,
    responses={503: {"model": HealthReport, "description": "The database is unreachable."}},
)
def get_health(
    request: Request, response: Response, session: SessionDep, settings: SettingsDep
) -> HealthReport:
    """Report health; 503 while the database is unreachable."""
    scheme, _, secret = request.headers.get("Authorization", "").partition(" ")
    report = health_report(
        session,
        celery_app=request.app.state.celery,
        heartbeat_timeout=settings.heartbeat_timeout,
        secret=secret.strip() if scheme.lower() == "bearer" else None,
    )
    if not report.database.ok:
        response.status_code = 503
        response.headers["Retry-After"] = str(DATABASE_RETRY_AFTER_SECONDS)
    return report
