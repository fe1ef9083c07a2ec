"""Rendering with matplotlib's Agg backend, imported inside each function so the API starts fast."""

from __future__ import annotations

import io
import math
from collections.abc import Sequence
from typing import Any

from api.compare.bands import Band
from api.compare.query import parse_target
from api.compare.schemas import Comparison
from training.records import is_maximized

MIN_WIDTH, MAX_WIDTH, DEFAULT_WIDTH = 320, 3000, 1000
MIN_HEIGHT, MAX_HEIGHT, DEFAULT_HEIGHT = 240, 2000, 600
DPI = 100


def _figure(width: int, height: int) -> tuple[Any, Any]:
    import matplotlib

    matplotlib.use("Agg", force=True)
    from matplotlib.figure import Figure  # a bare Figure: no pyplot state shared between requests

    figure = Figure(figsize=(width / DPI, height / DPI), dpi=DPI, layout="constrained")
    axes = figure.add_subplot()
    axes.grid(True, which="major", alpha=0.3)
    return figure, axes


def _plain_log_axis(axes: Any) -> None:
    """Log y axis labelled 0.2, 0.5, 1, 2 rather than 2×10⁻¹."""
    from matplotlib.ticker import FuncFormatter, LogLocator

    axes.set_yscale("log")
    label = FuncFormatter(lambda value, _position: f"{value:g}")
    axes.yaxis.set_major_formatter(label)
    axes.yaxis.set_minor_locator(LogLocator(subs=(2.0, 5.0)))
    axes.yaxis.set_minor_formatter(label)
    axes.tick_params(axis="y", which="minor", labelsize=8)


def _png(figure: Any) -> bytes:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=DPI)  # no bbox_inches: the image keeps the asked size
    return buffer.getvalue()


def _wants_log(values: Sequence[float], metric: str) -> bool:
    """Log scale for positive losses that span more than a decade; accuracies stay linear."""
    if is_maximized(metric) or not values or min(values) <= 0:
        return False
    return max(values) / min(values) > 10


def _label(key: dict[str, Any]) -> str:
    return ", ".join(f"{path}={value}" for path, value in key.items()) or "all jobs"


def _short(text: str, limit: int = 70) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def message_png(
    title: str, message: str, *, width: int = DEFAULT_WIDTH, height: int = DEFAULT_HEIGHT
) -> bytes:
    """An image that says why there is nothing to draw."""
    figure, axes = _figure(width, height)
    axes.axis("off")
    axes.set_title(title, fontsize=14)
    axes.text(0.5, 0.5, message, ha="center", va="center", wrap=True, fontsize=12, transform=axes.transAxes)
    return _png(figure)


def _mark_drops(axes: Any, band: Band, color: Any) -> None:
    """Write the new n where fewer runs reach an epoch than the one before (runs that stopped early)."""
    for at in range(1, len(band.epochs)):
        if band.n[at] < band.n[at - 1]:
            epoch, mean, n = band.epochs[at], band.mean[at], band.n[at]
            axes.plot([epoch], [mean], marker="v", color=color, markersize=5)
            axes.annotate(
                f"n={n}", (epoch, mean), textcoords="offset points", xytext=(3, 5), fontsize=7, color=color
            )


def comparison_png(
    comparison: Comparison, *, metric: str, width: int = DEFAULT_WIDTH, height: int = DEFAULT_HEIGHT
) -> bytes:
    """Overlaid curves of `metric`; seed groups as a mean line with its 95% CI band, n marked as it drops."""
    figure, axes = _figure(width, height)
    import matplotlib

    palette = matplotlib.colormaps["tab10" if len(comparison.groups) <= 10 else "viridis"]
    every_value: list[float] = []
    repeated = any(group.n >= 2 for group in comparison.groups)
    faint = len(comparison.jobs) <= 60  # beyond that, single runs only blur the bands
    job_curves = comparison.curves or {}
    bands: list[Band | None] = [*comparison.bands.get(metric, [])]
    bands += [None] * (len(comparison.groups) - len(bands))
    for index, (group, band) in enumerate(zip(comparison.groups, bands, strict=True)):
        color = palette(
            index % 10 if len(comparison.groups) <= 10 else index / max(len(comparison.groups) - 1, 1)
        )
        label = _short(_label(group.key))
        if index == comparison.best_group and len(comparison.groups) > 1:
            label = f"★ {label}"
        curves = [job_curves.get(job_id, {}).get(metric, []) for job_id in group.job_ids]
        for curve in curves:
            every_value.extend(value for _epoch, value in curve)
        if repeated:
            for curve in curves:
                if curve and faint:  # each seed faintly, under its group's mean
                    axes.plot(*zip(*curve, strict=True), color=color, alpha=0.2, linewidth=0.8)
            if band is None or not band.epochs:
                continue
            counted = band.n[0] if band.n else 0
            axes.plot(band.epochs, band.mean, color=color, linewidth=2.2, label=f"{label} (n={counted})")
            low = [m if v is None else v for m, v in zip(band.mean, band.ci_low, strict=True)]
            high = [m if v is None else v for m, v in zip(band.mean, band.ci_high, strict=True)]
            every_value.extend(low + high)
            axes.fill_between(band.epochs, low, high, color=color, alpha=0.18, linewidth=0)
            _mark_drops(axes, band, color)
        else:
            for curve in curves:
                if curve:
                    axes.plot(*zip(*curve, strict=True), color=color, linewidth=1.8, label=label)
    if not every_value:
        axes.text(
            0.5,
            0.5,
            f"no {metric} recorded yet",
            ha="center",
            va="center",
            fontsize=13,
            transform=axes.transAxes,
        )
    elif _wants_log(every_value, metric):
        _plain_log_axis(axes)
    shown = " (line: mean over seeds, band: 95% CI of the mean, ▼ n drops)" if repeated else ""
    if comparison.best_group is not None and len(comparison.groups) > 1:
        shown += ", ★ best"
    axes.set_title(f"{metric} by epoch, {len(comparison.jobs)} jobs{shown}", fontsize=12)
    axes.set_xlabel("epoch")
    axes.set_ylabel(metric + (" (log scale)" if axes.get_yscale() == "log" else ""))
    goal = parse_target(comparison.target) if comparison.target else None
    if goal is not None and goal.field == metric:
        axes.axhline(goal.value, color="0.3", linestyle="--", linewidth=1, label=f"target {goal}")
    if axes.get_legend_handles_labels()[0]:
        columns = 1 if len(comparison.groups) <= 8 else 2
        axes.legend(
            loc="best", fontsize=8 if len(comparison.groups) > 4 else 9, ncols=columns, framealpha=0.85
        )
    return _png(figure)


def layer_png(
    epochs: list[int],
    layers: dict[str, list[float | None]],
    *,
    title: str,
    ylabel: str,
    log: bool,
    fraction: bool = False,
    width: int = DEFAULT_WIDTH,
    height: int = DEFAULT_HEIGHT,
) -> bytes:
    """One line per layer over epochs, colored by depth (first layer dark, output light)."""
    import matplotlib

    figure, axes = _figure(width, height)
    palette = matplotlib.colormaps["viridis"]
    count = len(layers)
    plotted: list[float] = []
    for depth, (name, values) in enumerate(layers.items()):
        points = [
            (epoch, value)
            for epoch, value in zip(epochs, values, strict=True)
            if value is not None and math.isfinite(value) and (value > 0 or not log)
        ]
        if not points:
            continue
        plotted.extend(value for _epoch, value in points)
        color = palette(0.9 * depth / max(count - 1, 1))
        xs, ys = zip(*points, strict=True)
        axes.plot(
            xs,
            ys,
            color=color,
            linewidth=2,
            marker="o" if len(points) <= 30 else None,
            markersize=3,
            label=name,
        )
    if log and plotted:
        _plain_log_axis(axes)
    if fraction and plotted:
        from matplotlib.ticker import PercentFormatter

        axes.set_ylim(0, min(1.0, max(max(plotted) * 1.15, 0.05)))
        axes.yaxis.set_major_formatter(PercentFormatter(1.0))
    axes.set_title(title, fontsize=12)
    axes.set_xlabel("epoch")
    axes.set_ylabel(ylabel)
    if plotted:  # outside the axes, so it never hides a line
        axes.legend(title="layer (input → output)", loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=9)
    else:
        axes.text(
            0.5, 0.5, "no values recorded", ha="center", va="center", fontsize=13, transform=axes.transAxes
        )
    return _png(figure)
