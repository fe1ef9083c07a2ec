"""Learning curves as inline SVG, drawn on the server (no chart library in the browser, no inline style).

Colors come from CSS classes (series-0, series-1, ...) in the dashboard's stylesheet; each chart has a
<title> and a <desc> that states the curves in words, for screen readers.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from markupsafe import Markup, escape

Curve = list[tuple[int, float]]
WIDTH, HEIGHT = 640, 280
LEFT, RIGHT, TOP, BOTTOM = 64, 16, 34, 40
MAX_POINTS = 400  # per curve: min and max of each bucket, so spikes survive
CHARTS = (
    ("Loss", ("train_loss", "val_loss")),
    ("Accuracy", ("train_accuracy", "val_accuracy")),
    ("RMSE", ("train_rmse", "val_rmse")),
)


def downsample(curve: Curve, points: int) -> Curve:
    """At most `points` pairs: points // 2 buckets, each keeping its min and max (spikes survive)."""
    if len(curve) <= points:
        return curve
    buckets = max(points // 2, 1)
    size = len(curve) / buckets
    kept: Curve = []
    for bucket in range(buckets):
        chunk = curve[int(bucket * size) : int((bucket + 1) * size)]
        if chunk:
            low = min(chunk, key=lambda pair: pair[1])
            high = max(chunk, key=lambda pair: pair[1])
            kept.extend(sorted({low, high}))
    return kept


def curves_from(records: Sequence[dict[str, Any]], fields: Sequence[str]) -> dict[str, Curve]:
    """{field: [(epoch, value)]} of the finite numbers in per-epoch records."""
    curves: dict[str, Curve] = {name: [] for name in fields}
    for record in records:
        epoch = record.get("epoch")
        for name in fields:
            value = record.get(name)
            if isinstance(value, bool) or not isinstance(value, int | float):
                continue
            if isinstance(epoch, int) and math.isfinite(value):
                curves[name].append((epoch, float(value)))
    return {name: curve for name, curve in curves.items() if curve}


def nice_ticks(low: float, high: float, count: int = 5) -> list[float]:
    """Round tick values covering [low, high]."""
    if high <= low:
        high = low + (abs(low) or 1.0)
    raw = (high - low) / count
    magnitude = 10 ** math.floor(math.log10(raw))
    step = next(m * magnitude for m in (1, 2, 2.5, 5, 10) if m * magnitude >= raw)
    first = math.floor(low / step) * step
    ticks = []
    value = first
    while value <= high + step * 1e-9:
        ticks.append(round(value, 12))
        value += step
    if ticks[-1] < high:
        ticks.append(round(value, 12))
    return ticks


def _log_ticks(low: float, high: float) -> list[float]:
    decades = range(math.floor(math.log10(low)), math.ceil(math.log10(high)) + 1)
    subs = (1, 2, 5) if len(decades) <= 3 else (1,)
    ticks = [m * 10.0**d for d in decades for m in subs]
    inside = [t for t in ticks if low <= t <= high]
    below = [t for t in ticks if t < low]
    above = [t for t in ticks if t > high]
    return ([below[-1]] if below else []) + inside + ([above[0]] if above else [])


def _label(value: float) -> str:
    return f"{value:g}" if abs(value) >= 1e-3 or value == 0 else f"{value:.0e}"


def line_chart(curves: dict[str, Curve], *, title: str, chart_id: str) -> Markup:
    """An SVG chart of the curves over epochs; log y when positive values span more than a decade."""
    curves = {name: downsample(curve, MAX_POINTS) for name, curve in curves.items() if curve}
    values = [value for curve in curves.values() for _epoch, value in curve]
    epochs = [epoch for curve in curves.values() for epoch, _value in curve]
    log = bool(values) and min(values) > 0 and max(values) / min(values) > 10 and "ccuracy" not in title
    low, high = (min(values), max(values)) if values else (0.0, 1.0)
    yticks = _log_ticks(low, high) if log else nice_ticks(low, high)
    ylow, yhigh = yticks[0], yticks[-1]
    xlow, xhigh = (min(epochs), max(epochs)) if epochs else (1, 2)
    xhigh = max(xhigh, xlow + 1)
    xticks = [t for t in nice_ticks(xlow, xhigh) if t == int(t) and xlow <= t <= xhigh] or [xlow]
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM

    def y_of(value: float) -> float:
        if log:
            share = (math.log10(value) - math.log10(ylow)) / (math.log10(yhigh) - math.log10(ylow))
        else:
            share = (value - ylow) / ((yhigh - ylow) or 1.0)
        return TOP + plot_h * (1 - share)

    def x_of(epoch: float) -> float:
        return LEFT + plot_w * (epoch - xlow) / (xhigh - xlow)

    described = "; ".join(
        f"{name} from {_label(curve[0][1])} at epoch {curve[0][0]} to {_label(curve[-1][1])} "
        f"at epoch {curve[-1][0]}"
        for name, curve in curves.items()
    )
    parts = [
        f'<svg class="chart" viewBox="0 0 {WIDTH} {HEIGHT}" role="img" '
        f'aria-labelledby="{chart_id}-title {chart_id}-desc" xmlns="http://www.w3.org/2000/svg">',
        f'<title id="{chart_id}-title">{escape(title)}</title>',
        f'<desc id="{chart_id}-desc">{escape(described or "no epochs recorded yet")}</desc>',
        f'<text class="chart-title" x="{LEFT}" y="20">{escape(title)}{" (log scale)" if log else ""}</text>',
    ]
    for tick in yticks:
        y = y_of(tick)
        parts.append(f'<line class="grid" x1="{LEFT}" x2="{WIDTH - RIGHT}" y1="{y:.1f}" y2="{y:.1f}"/>')
        parts.append(
            f'<text class="tick" x="{LEFT - 6}" y="{y + 4:.1f}" text-anchor="end">{_label(tick)}</text>'
        )
    for tick in xticks:
        x = x_of(tick)
        parts.append(
            f'<line class="axis" x1="{x:.1f}" x2="{x:.1f}" y1="{TOP + plot_h}" y2="{TOP + plot_h + 4}"/>'
        )
        parts.append(
            f'<text class="tick" x="{x:.1f}" y="{TOP + plot_h + 17}" text-anchor="middle">{int(tick)}</text>'
        )
    parts.append(
        f'<text class="tick" x="{LEFT + plot_w / 2:.0f}" y="{HEIGHT - 4}" text-anchor="middle">epoch</text>'
    )
    parts.append(f'<rect class="frame" x="{LEFT}" y="{TOP}" width="{plot_w}" height="{plot_h}"/>')
    for index, (name, curve) in enumerate(curves.items()):
        points = " ".join(f"{x_of(epoch):.1f},{y_of(value):.1f}" for epoch, value in curve)
        parts.append(f'<polyline class="series series-{index}" points="{points}"/>')
        if len(curve) == 1:
            x, y = x_of(curve[0][0]), y_of(curve[0][1])
            parts.append(f'<circle class="dot series-{index}" cx="{x:.1f}" cy="{y:.1f}" r="3"/>')
        legend_x = WIDTH - RIGHT - 150 * (len(curves) - index)
        parts.append(
            f'<line class="series series-{index}" x1="{legend_x}" x2="{legend_x + 18}" y1="15" y2="15"/>'
            f'<text class="legend" x="{legend_x + 22}" y="19">{escape(name)}</text>'
        )
    if not curves:
        parts.append(
            f'<text class="legend" x="{LEFT + plot_w / 2:.0f}" y="{TOP + plot_h / 2:.0f}" '
            'text-anchor="middle">no epochs recorded yet</text>'
        )
    parts.append("</svg>")
    return Markup("\n".join(parts))


def learning_charts(records: Sequence[dict[str, Any]], job_id: str) -> list[Markup]:
    """Loss, and accuracy or RMSE, of a job's records: the charts that have any data (loss always)."""
    charts = []
    for title, fields in CHARTS:
        curves = curves_from(records, fields)
        if curves or title == "Loss":
            charts.append(line_chart(curves, title=title, chart_id=f"{job_id}-{title.lower()}"))
    return charts
