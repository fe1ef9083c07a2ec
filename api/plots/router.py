"""/v1/jobs/{id}/plots: a job's per-layer diagnostics as PNG images."""

from __future__ import annotations

from fastapi import APIRouter, Response

from api.compare.router import PNG_RESPONSE, HeightQuery, WidthQuery
from api.deps import OwnerDep, SessionDep
from api.errors import problem_responses
from api.jobs.router import JobId
from api.plots import render, service

router = APIRouter(prefix="/v1/jobs", tags=["jobs"])


@router.get(
    "/{job_id}/plots/gradients.png",
    summary="Plot gradient norms by layer",
    description="The gradient norm of each layer's weights over epochs, on a log axis, one line per layer "
    "colored by depth (dark: first hidden layer, light: output). Lines fanning out by orders of magnitude "
    "are the vanishing (or exploding) gradient. Before the first epoch the image says so.",
    response_class=Response,
    responses=problem_responses(404, success=PNG_RESPONSE),
)
def get_gradients_plot(
    job_id: JobId,
    owner: OwnerDep,
    session: SessionDep,
    width: WidthQuery = render.DEFAULT_WIDTH,
    height: HeightQuery = render.DEFAULT_HEIGHT,
) -> Response:
    """Plot gradient norms."""
    image = service.gradients_png(session, owner=owner, job_id=job_id, width=width, height=height)
    return Response(image, media_type="image/png")


@router.get(
    "/{job_id}/plots/saturation.png",
    summary="Plot saturated or dead units by layer",
    description="Per hidden layer over epochs: the fraction of saturated units (sigmoid, tanh: |net input| "
    "> 3, where the derivative is nearly 0) or of dead units (relu, leaky_relu: output 0 on every example "
    "seen). The title says which. An activation with neither (elu, gelu, linear) answers 409.",
    response_class=Response,
    responses=problem_responses(404, 409, success=PNG_RESPONSE),
)
def get_saturation_plot(
    job_id: JobId,
    owner: OwnerDep,
    session: SessionDep,
    width: WidthQuery = render.DEFAULT_WIDTH,
    height: HeightQuery = render.DEFAULT_HEIGHT,
) -> Response:
    """Plot saturation."""
    image = service.saturation_png(session, owner=owner, job_id=job_id, width=width, height=height)
    return Response(image, media_type="image/png")
