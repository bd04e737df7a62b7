"""Showing a tuning sweep: the Pareto frontier as a table and the cost/quality plot."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from modeltriage.learn.plots import pyplot, save
from modeltriage.learn.tuning import Point


def format_threshold(value: float | None) -> str:
    """A threshold as shown to a user: ``off`` when unset."""
    return "off" if value is None else f"{value:g}"


def format_table(
    points: Sequence[Point], chosen: Point | None, limit: int = 25, *, cascade: bool = False
) -> str:
    """The Pareto-efficient points (no other is both cheaper and better), cheapest first;
    with ``cascade``, the swept cascade_margin too."""
    frontier = pareto(points)
    head = f"{'c.marg':>6} " if cascade else ""
    lines = [
        f"{head}{'margin':>7} {'min_sim':>7} {'d.conf':>6} {'savings':>8} {'quality':>8} "
        f"{'measured':>9} {'cascade':>8}  tiers"
    ]
    for p in frontier[:limit]:
        mark = "  <- chosen" if p == chosen else ""
        tiers = " ".join(f"{t} {100 * s:.0f}%" for t, s in p.tier_share.items())
        lead = f"{format_threshold(p.cascade_margin):>6} " if cascade else ""
        lines.append(
            f"{lead}{format_threshold(p.margin):>7} {format_threshold(p.min_similarity):>7} "
            f"{format_threshold(p.difficulty_confidence):>6} {100 * p.savings:7.1f}% "
            f"{p.quality:8.3f} {100 * p.measured_share:8.0f}% "
            f"{100 * p.cascade_rate:7.1f}%  {tiers}{mark}"
        )
    return "\n".join(lines)


def pareto(points: Sequence[Point]) -> list[Point]:
    """The points no other point beats on both cost and quality, cheapest first."""
    ordered = sorted(points, key=lambda p: (p.cost_usd, -p.quality))
    frontier: list[Point] = []
    for p in ordered:
        if not frontier or p.quality > frontier[-1].quality:
            frontier.append(p)
    return frontier


def plot(
    points: Sequence[Point],
    chosen: Point | None,
    baseline_quality: float,
    path: Path,
    title: str,
) -> None:
    """Cost/quality curve as a PNG: every grid point, the frontier, the chosen point."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(7, 4.5), dpi=120)
    ax.scatter(
        [1 - p.savings for p in points],
        [p.quality for p in points],
        s=10,
        color="#bbbbbb",
        label="grid points",
    )
    front = pareto(points)
    ax.plot(
        [1 - p.savings for p in front],
        [p.quality for p in front],
        color="#1f77b4",
        marker="o",
        markersize=3,
        label="frontier",
    )
    ax.scatter([1.0], [baseline_quality], marker="s", color="black", label="always flagship")
    if chosen is not None:
        ax.scatter(
            [1 - chosen.savings],
            [chosen.quality],
            s=120,
            facecolors="none",
            edgecolors="red",
            linewidths=2,
            label=f"chosen: margin {format_threshold(chosen.margin)}, "
            f"min_similarity {format_threshold(chosen.min_similarity)}",
        )
    ax.set_xlabel("cost relative to always-flagship")
    ax.set_ylabel("quality")
    ax.set_title(title)
    save(fig, ax, path)
