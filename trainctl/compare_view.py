"""How `trainctl compare` shows seed groups: mean ± 95% CI, Holm's p, Hedges' g, verdict; effects; notes.

Tables fit 100 columns: long field names wrap in their header, numbers are short.
"""

from __future__ import annotations

import json
import math
from typing import Any

from rich import box
from rich.table import Table as RichTable

TABLE_WIDTH = 100
VERDICTS = {"better": "better", "worse": "worse", "too few seeds to test": "too few seeds"}


def num(value: Any, digits: int = 4) -> str:
    """A number to `digits` significant digits ('-' for none)."""
    if value is None:
        return "-"
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    return f"{value:.{digits}g}" if isinstance(value, float) else str(value)


def level(value: Any) -> str:
    """A grid value in a cell: text as is, the rest as JSON."""
    return value if isinstance(value, str) else json.dumps(value, separators=(",", ":"))


def mean_ci(stats: dict[str, Any] | None) -> str:
    """'mean ± half-width of the 95% CI', or the mean alone with n when there is no CI."""
    if not stats or stats.get("mean") is None:
        return "-"
    low, high = stats.get("ci_low"), stats.get("ci_high")
    if low is None or high is None:
        return f"{num(stats['mean'])} (n={stats.get('n', 0)})"
    return f"{num(stats['mean'])} ± {num((high - low) / 2, 2)}"


def p_value(p: float | None) -> str:
    if p is None:
        return "-"
    return "<0.0001" if p < 1e-4 else f"{p:.2g}"


def verdict(test: dict[str, Any]) -> str:
    text = str(test.get("verdict", ""))
    return VERDICTS.get(text, "not distinguishable" if text.startswith("not") else text)


def groups_table(result: dict[str, Any], metric: str) -> RichTable:
    """One row per seed group: its differing fields, n, metric mean ± CI, and its test against the best."""
    groups = result.get("groups") or []
    best = result.get("best_group")
    tests = {test["other"]: test for test in result.get("tests") or []}
    columns = list(dict.fromkeys(path for group in groups for path in group.get("key") or {}))
    alpha = result.get("alpha", 0.05)
    table = RichTable(
        title=f"compare by {metric}: mean ± 95% CI; vs ★: Holm's p, Hedges' g, verdict at alpha {alpha:g}",
        title_justify="left",
        box=box.SIMPLE_HEAD,
        pad_edge=False,
        collapse_padding=True,
    )
    table.add_column("")
    for column in columns:
        table.add_column(column, overflow="fold")
    # Numbers and verdicts never wrap; the differing fields' names and values fold instead.
    table.add_column("n", justify="right", no_wrap=True)
    table.add_column(f"{metric} mean ± CI", justify="right", no_wrap=True)
    for header in ("p (Holm)", "g"):
        table.add_column(header, justify="right", no_wrap=True)
    table.add_column("vs ★", no_wrap=True)
    target = result.get("target")
    if target:
        table.add_column(f"epochs to {target}", justify="right", overflow="fold", min_width=9)
    for index, group in enumerate(groups):
        is_best = index == best
        stats = (group.get("metrics") or {}).get(metric)
        test = tests.get(index)
        cells = ["★" if is_best else str(index)]
        cells += [level((group.get("key") or {}).get(column, "-")) for column in columns]
        cells += [str((stats or {}).get("n", 0)), mean_ci(stats)]
        if test is None:
            cells += ["", "", "best" if is_best else "-"]
        else:
            g = test.get("hedges_g")
            cells += [p_value(test.get("p_holm")), "-" if g is None else f"{g:.2f}", verdict(test)]
        if target:
            reached = (group.get("metrics") or {}).get("epochs_to_target") or {}
            counted = len(group.get("seeds") or [])
            mean = reached.get("mean")
            cells.append(
                f"never (0/{counted})" if mean is None else f"{num(mean, 3)} ({reached['n']}/{counted})"
            )
        table.add_row(*cells, style="bold green" if is_best else None)
    return table


def effects_table(result: dict[str, Any]) -> RichTable | None:
    """Main effects and two-way interactions with 95% CIs (None when the groups are not a full grid)."""
    effects = result.get("effects") or {}
    if not effects.get("effects"):
        return None
    metric = result.get("metric", "")
    table = RichTable(
        title=f"effects on {metric} (difference of means over the grid, 95% CI)",
        title_justify="left",
        box=box.SIMPLE_HEAD,
        pad_edge=False,
        collapse_padding=True,
    )
    table.add_column("term", overflow="fold")
    table.add_column("contrast", no_wrap=True)
    table.add_column("effect", justify="right", no_wrap=True)
    table.add_column("95% CI", justify="right", no_wrap=True)
    for effect in effects["effects"]:
        low, high = effect.get("ci_low"), effect.get("ci_high")
        interval = "-" if low is None or high is None else f"[{num(low, 3)}, {num(high, 3)}]"
        table.add_row(effect["term"], effect["contrast"], num(effect["estimate"], 3), interval)
    return table


def notes(result: dict[str, Any], sweep_id: str | None) -> list[str]:
    """Warnings, why effects are missing, and how many seeds would settle each undecided comparison."""
    lines = [f"warning: {warning['message']}" for warning in result.get("warnings") or []]
    effects = result.get("effects") or {}
    if effects.get("reason"):
        lines.append(f"effects: {effects['reason']}")
    wanted = 0
    for test in result.get("tests") or []:
        needed = test.get("seeds_needed")
        if needed is None:
            continue
        more = "more than " if test.get("seeds_needed_capped") else "about "
        lines.append(
            f"group {test['other']} vs ★ ({test.get('test')} test): {more}{needed} seeds per group would "
            "detect the observed difference with 80% power (an estimate from the observed g)"
        )
        if not test.get("seeds_needed_capped"):
            wanted = max(wanted, needed)
    if wanted and sweep_id:
        lines.append(f"run the missing seeds with: trainctl add-seeds {sweep_id} {wanted}")
    return lines
