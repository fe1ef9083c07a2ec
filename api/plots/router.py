"""PNG images: a job's per-layer diagnostics (/v1/jobs/{id}/plots) and compared curves (/v1/compare)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Response

from api.deps import OwnerDep, SessionDep
from api.errors import problem_responses
from api.params import PNG_RESPONSE, JobId, JobsQuery, MetricQuery, SweepQuery, TargetQuery, job_ids
from api.plots import render, service

router = APIRouter()

WidthQuery = Annotated[
    int, Query(ge=render.MIN_WIDTH, le=render.MAX_WIDTH, description="Image width in pixels.")
]
HeightQuery = Annotated[
    int, Query(ge=render.MIN_HEIGHT, le=render.MAX_HEIGHT, description="Image height in pixels.")
]


@router.get(
    "/v1/jobs/{job_id}/plots/gradients.png",
    tags=["jobs"],
    operation_id="plot_job_gradients",
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
    "/v1/jobs/{job_id}/plots/saturation.png",
    tags=["jobs"],
    operation_id="plot_job_saturation",
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


@router.get(
    "/v1/compare/plot.png",
    tags=["compare"],
    operation_id="plot_comparison",
    summary="Plot compared learning curves",
    description="Overlaid curves of `metric` for the jobs named by `jobs` or `sweep`. Jobs repeated over "
    "seeds are drawn as one mean line per group with the 95% CI band of the mean at each epoch (each seed "
    "faint beneath; ▼ and the new n where runs stopped early); the legend names each group by its "
    "differing fields and n, ★ marks the best group. Losses spanning more "
    "than a decade use a log axis. With a `target` on the same metric, the threshold is a dashed line.",
    response_class=Response,
    responses=problem_responses(404, success=PNG_RESPONSE),
)
def get_compare_plot(
    owner: OwnerDep,
    session: SessionDep,
    jobs: JobsQuery = None,
    sweep: SweepQuery = None,
    metric: MetricQuery = "val_loss",
    target: TargetQuery = None,
    width: WidthQuery = render.DEFAULT_WIDTH,
    height: HeightQuery = render.DEFAULT_HEIGHT,
) -> Response:
    """Plot compared curves."""
    image = service.comparison_png(
        session,
        owner=owner,
        job_ids=job_ids(jobs),
        sweep_id=sweep,
        metric=metric,
        target=target,
        width=width,
        height=height,
    )
    return Response(image, media_type="image/png")
