"""Showing an outcomes evaluation: the text table and the quality-against-cost plot."""

from __future__ import annotations

from pathlib import Path

from modeltriage.core.costs import savings
from modeltriage.learn.outcome_eval import OutcomesReport
from modeltriage.learn.plots import pyplot, save
from modeltriage.learn.tuning_report import format_threshold


def format_outcomes(report: OutcomesReport) -> str:
    """Baselines, the router's sweep beside random routing, and the headline figures."""
    top = next(b for b in report.baselines if b.name == "always-flagship")
    lines = [
        f"{report.test_rows} test prompts ({report.skipped_rows} skipped: a tier model has no "
        f"outcome); tiers {', '.join(f'{t}={m}' for t, m in report.tiers)}; long texts: "
        f"{report.long_text}",
        "",
        f"{'policy':<40} {'quality':>8} {'% flagship':>10} {'cost $':>9} {'savings':>8}",
    ]

    def row(name: str, quality: float, cost: float) -> str:
        rel = quality / top.quality if top.quality else float("nan")
        # nan, not savings()'s 0.0: a free flagship leaves nothing to save against.
        saved = savings(cost, top.cost_usd) if top.cost_usd else float("nan")
        return f"{name:<40} {quality:8.3f} {100 * rel:9.1f}% {cost:9.3f} {100 * saved:7.1f}%"

    for b in report.baselines:
        if not b.name.startswith("random"):
            lines.append(row(b.name, b.quality, b.cost_usd))
    lines.append("")
    lines.append("router sweep (difficulty_confidence; random routing at the same flagship share)")
    randoms = {
        round(b.flagship_share or 0.0, 6): b
        for b in report.baselines
        if b.name.startswith("random")
    }
    for p in report.curve:
        label = f"router d.conf={format_threshold(p.difficulty_confidence)}"
        lines.append(
            row(label, p.quality, p.cost_usd) + f"  flagship {100 * p.flagship_share:5.1f}%"
        )
        rnd = randoms.get(round(p.flagship_share, 6))
        if rnd is not None:
            lines.append(row("  random, same flagship share", rnd.quality, rnd.cost_usd))
    lines.append("")
    for key, value in report.savings_at.items():
        shown = "not reached" if value is None else f"{100 * value:.1f}%"
        lines.append(f"best savings at >= {key} of flagship quality: {shown}")

    def share(x: float | None) -> str:
        return "not reached" if x is None else f"{100 * x:.1f}% flagship calls"

    lines.append(
        f"APGR {report.apgr:.3f}; 50% of the quality gap needs {share(report.calls_for_50)}, "
        f"80% needs {share(report.calls_for_80)}"
    )
    return "\n".join(lines)


def plot_outcomes(report: OutcomesReport, path: Path) -> None:
    """Cost on x, quality on y: baselines as points, the router's sweep as a line."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(8, 5), dpi=120)
    curve = sorted(report.curve, key=lambda p: p.cost_usd)
    ax.plot(
        [p.cost_usd for p in curve],
        [p.quality for p in curve],
        marker="o",
        markersize=3,
        label="modeltriage (difficulty_confidence sweep)",
    )
    randoms = sorted(
        (b for b in report.baselines if b.name.startswith("random")), key=lambda b: b.cost_usd
    )
    ax.plot(
        [b.cost_usd for b in randoms],
        [b.quality for b in randoms],
        linestyle="--",
        color="#999999",
        label="random at the same flagship share",
    )
    for b in report.baselines:
        if b.name.startswith("random"):
            continue
        special = b.name in ("always-flagship", "always-cheapest", "oracle")
        ax.scatter(
            [b.cost_usd],
            [b.quality],
            s=30 if special else 12,
            marker="s" if special else "x",
            color="black" if special else "#d62728",
        )
        ax.annotate(
            b.name.split("/")[-1],
            (b.cost_usd, b.quality),
            fontsize=6,
            xytext=(3, 3),
            textcoords="offset points",
        )
    ax.set_xscale("log")
    ax.set_xlabel("total cost of the test prompts, USD (log scale)")
    ax.set_ylabel("mean quality")
    ax.set_title("Quality against cost on labelled outcomes")
    save(fig, ax, path)
