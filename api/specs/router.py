"""POST /v1/specs/validate."""

from __future__ import annotations

from fastapi import APIRouter

from api.deps import OwnerDep, SessionDep, SettingsDep
from api.errors import PROBLEM_RESPONSES
from api.specs.schemas import SpecReport, SpecValidationRequest
from api.specs.service import validate_spec

router = APIRouter(prefix="/v1/specs", tags=["specs"])


@router.post(
    "/validate",
    operation_id="validate_spec",
    summary="Validate a job spec",
    description="Checks a spec as POST /v1/jobs would (schema, dataset, service limits) and returns it "
    "normalized, with lint warnings and the network's parameter count. Creates nothing.",
    response_model=SpecReport,
    responses=PROBLEM_RESPONSES,
)
def post_validate(
    body: SpecValidationRequest, owner: OwnerDep, session: SessionDep, settings: SettingsDep
) -> SpecReport:
    """Validate without storing."""
    return validate_spec(session, owner=owner, spec=body.spec, settings=settings)
