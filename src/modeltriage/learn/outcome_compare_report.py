"""Showing a comparison of learned plans with the baselines: per split, the curves of the
first split, and the mean and worst split of the headline figures."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

from modeltriage.learn.outcome_compare import Comparison, PolicyPoint, SplitResult
from modeltriage.learn.plots import pyplot, save


def _pct(x: float | None) -> str:
    return "-" if x is None else f"{100 * x:.1f}%"


def _row(p: PolicyPoint) -> str:
    share = "" if p.flagship_share is None else f"{100 * p.flagship_share:6.1f}%"
    return (
        f"{p.name:<44} {p.quality:7.3f} {_pct(p.quality_share):>8} {p.cost_usd:9.3f} "
        f"{_pct(p.savings):>8} {share:>8}"
    )


def _mean_worst(values: Sequence[float | None], worst: Callable[..., float]) -> str:
    """Mean and worst split; a split that never reached the share counts as a miss."""
    reached = [v for v in values if v is not None]
    misses = len(values) - len(reached)
    if not reached:
        return "not reached"
    text = f"mean {_pct(sum(reached) / len(reached))}, worst {_pct(worst(reached))}"
    return text + (f" ({misses} split(s) never reach it)" if misses else "")


def format_split_table(split: SplitResult) -> list[str]:
    lines = [
        f"{'policy':<44} {'quality':>7} {'% flag.':>8} {'cost $':>9} {'savings':>8} {'flagship':>8}"
    ]
    lines += [_row(p) for p in split.baselines]
    lines.append(f"{_row(split.router)}   <- the router at floor {split.router.knob:g}")
    lines.append("router curve (plans re-chosen per floor, same voted intents):")
    lines += [_row(p) for p in split.router_curve]
    lines.append("random at the same flagship share:")
    lines += [_row(p) for p in split.random]
    lines.append("per-model kNN estimator (20 nearest training prompts; slack swept):")
    lines += [_row(p) for p in split.knn_curve]
    return lines


def format_comparison(report: Comparison) -> str:
    first = report.splits[0]
    kind = "with answer checks" if report.answers else "one model each (no `responses`)"
    seeds = ", ".join("test file" if s.seed is None else str(s.seed) for s in report.splits)
    lines = [
        f"plans {kind}, at >= {report.floor:g} of {report.flagship}'s quality; splits: {seeds}",
        "",
        f"split {seeds.split(', ')[0]}: {first.train_rows} train prompts, {first.test_rows} test "
        f"prompts ({first.set_aside} set aside: a model has no outcome on them); learned "
        f"margin {first.margin:g} standard errors"
        + (
            ""
            if first.intent_accuracy is None
            else f"; voted intent = true task for {_pct(first.intent_accuracy)}"
        ),
        *(f"  {g}: {label}" for g, label in first.plans.items()),
    ]
    if first.gaps:
        lines.append(
            "  training prompts without an outcome (judged where known, never as 0): "
            + ", ".join(f"{m} {n}" for m, n in first.gaps.items())
        )
    lines += ["", *format_split_table(first), "", "per split:"]
    for s in report.splits:
        lines.append(
            f"  seed {s.seed}: router {_pct(s.router.quality_share)} at {_pct(s.router.savings)}"
            f" savings (margin {s.margin:g}); best savings at >=98%: router "
            f"{_pct(s.savings_at['router']['98%'])}, kNN {_pct(s.savings_at['kNN']['98%'])}; "
            f"APGR router {s.apgr['router']:.3f}, kNN {s.apgr['kNN']:.3f}"
        )
    lines += ["", f"over {len(report.splits)} split(s), mean and worst:"]
    splits = report.splits
    lines.append(
        f"  router at floor {report.floor:g}: quality "
        f"{_mean_worst([s.router.quality_share for s in splits], min)}; savings "
        f"{_mean_worst([s.router.savings for s in splits], min)}"
    )
    for policy in ("router", "kNN"):
        for share in ("98%", "99.4%", "100%"):
            values = [s.savings_at[policy][share] for s in splits]
            lines.append(
                f"  {policy} curve, best savings at >= {share}: {_mean_worst(values, min)}"
            )
        areas = [s.apgr[policy] for s in splits]
        lines.append(f"  {policy} APGR: mean {sum(areas) / len(areas):.3f}, worst {min(areas):.3f}")
    lines.append(
        "the curves' best points are picked on the test prompts (as the kNN baseline's "
        "slack is); the router at its floor is not"
    )
    return "\n".join(lines)


def plot_comparison(report: Comparison, path: Path) -> None:
    """The first split's cost (x, log) against quality: curves and baselines."""
    split = report.splits[0]
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(8, 5), dpi=120)
    for curve, label in (
        (split.router_curve, "router (floor swept)"),
        (split.knn_curve, "per-model kNN (slack swept)"),
        (split.random, "random, same flagship share"),
    ):
        pts = sorted(curve, key=lambda p: p.cost_usd)
        ax.plot([p.cost_usd for p in pts], [p.quality for p in pts], marker="o", ms=3, label=label)
    for p in split.baselines:
        ax.scatter([p.cost_usd], [p.quality], s=12, marker="x", color="black")
        ax.annotate(p.name.split("/")[-1], (p.cost_usd, p.quality), fontsize=6)
    ax.set_xscale("log")
    ax.set_xlabel("total cost of the test prompts, USD (log scale)")
    ax.set_ylabel("mean quality")
    ax.set_title("Learned plans against the baselines")
    save(fig, ax, path)
