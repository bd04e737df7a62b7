"""The terminal view of an intent evaluation: headline metrics of every policy, then the
router's worst confusions and weakest intents (the JSON report has them all)."""

from __future__ import annotations

from collections.abc import Sequence

from modeltriage.learn.evaluation import IntentEvaluation, PolicyResult


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.1f}%"


def _usd(value: float) -> str:
    return f"${value:,.2f}" if value >= 1 else f"${value:.4f}"


def render_table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """Plain-text table that is also GitHub markdown."""
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(headers)]

    def line(cells: Sequence[str]) -> str:
        padded = (
            c.rjust(w) if _numeric(c) else c.ljust(w) for c, w in zip(cells, widths, strict=True)
        )
        return "| " + " | ".join(padded) + " |"

    return "\n".join(
        [line(headers), "|" + "|".join("-" * (w + 2) for w in widths) + "|", *map(line, rows)]
    )


def _numeric(cell: str) -> bool:
    # Figures read best right-aligned; "-" stands for a missing figure.
    return cell == "-" or cell[:1].isdigit() or cell[:1] == "$"


def _shorten(text: str, width: int) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"


def _policy_row(label: str, p: PolicyResult) -> list[str]:
    s = p.scores
    saved = "-" if p.cost.savings is None else f"{100 * p.cost.savings:.1f}% saved"
    return [
        label,
        _pct(s.in_scope_accuracy),
        _pct(s.macro_f1),
        _pct(s.oos_recall),
        _pct(s.oos_precision),
        _pct(s.overall_accuracy),
        _usd(p.cost.total_usd),
        saved,
    ]


def _min_similarity_line(report: IntentEvaluation) -> str:
    # Printed as "floor", the label this report has always used (tests and docs read it).
    t = report.min_similarity_tuning
    if t is not None:
        return (
            f"floor {t.min_similarity:.3f}, tuned on {t.held_out_rows:,} held-out training "
            f"rows ({t.held_out_in_scope:,} in scope, {t.held_out_out_of_scope:,} out of "
            f"scope; {t.tuning_exemplars:,} exemplars): there overall "
            f"{_pct(t.overall_accuracy)}, OOS recall {_pct(t.oos_recall)}, precision "
            f"{_pct(t.oos_precision)}"
        )
    value = "none" if report.min_similarity is None else f"{report.min_similarity:.3f}"
    return f"floor {value} (from {report.min_similarity_source})"


def _header(report: IntentEvaluation) -> list[str]:
    r = report.router
    s = r.scores
    sampled = (
        "all in-scope rows"
        if report.per_intent is None
        else (f"{report.per_intent} per intent, seed {report.seed}")
    )
    return [
        f"exemplars: {report.exemplars:,} of {report.intents} intents ({sampled}) from "
        f"{report.train_rows:,} training rows",
        f"test: {s.rows:,} rows ({s.in_scope_rows:,} in scope, {s.out_of_scope_rows:,} out "
        "of scope)",
        f"router: {r.aggregation}, top_k {r.top_k}, margin {report.margin}, adapter "
        f"{report.adapter}; " + _min_similarity_line(report),
        *_renamed_lines(report),
    ]


def _renamed_lines(report: IntentEvaluation) -> list[str]:
    """The dataset's own labels where they were not valid intent names."""
    if not report.renamed_labels:
        return []
    pairs = sorted(report.renamed_labels.items())
    shown = ", ".join(f"{old!r} as {new}" for new, old in pairs[:10])
    more = f" and {len(pairs) - 10} more (all in the JSON report)" if len(pairs) > 10 else ""
    return [f"labels renamed to intent names: {shown}{more}"]


def _policy_table(report: IntentEvaluation) -> str:
    r = report.router
    return render_table(
        [
            "policy",
            "in-scope acc",
            "macro-F1",
            "OOS recall",
            "OOS precision",
            "overall acc",
            "est. cost",
            "vs flagship",
        ],
        [
            _policy_row(f"router ({r.aggregation}, top_k {r.top_k})", r),
            _policy_row("top-1 nearest neighbour", report.top1),
            [
                f"always flagship ({report.flagship_model})",
                *(["-"] * 5),
                _usd(report.flagship_total_usd),
                "0.0% saved",
            ],
        ],
    )


def _worst_lines(report: IntentEvaluation, worst: int) -> list[str]:
    s = report.router.scores
    lines: list[str] = []
    if s.worst_confusions:
        lines += [
            "",
            "worst confusions, router (gold -> predicted):",
            render_table(
                ["count", "gold", "predicted", "example"],
                [
                    [str(c.count), c.gold, c.predicted, _shorten(c.example, 60)]
                    for c in s.worst_confusions[:worst]
                ],
            ),
        ]
    weakest = sorted(s.per_intent, key=lambda i: (i.f1, i.recall, i.intent))[:worst]
    if weakest:
        lines += [
            "",
            f"weakest {len(weakest)} intents by F1, router (all in the JSON report):",
            render_table(
                ["intent", "precision", "recall", "F1", "support"],
                [
                    [i.intent, _pct(i.precision), _pct(i.recall), _pct(i.f1), str(i.support)]
                    for i in weakest
                ],
            ),
        ]
    return lines


def format_report(report: IntentEvaluation, worst: int = 10) -> str:
    """The terminal view: headline metrics of every policy, then the router's worst
    confusions and intents (the JSON report has them all)."""
    r = report.router
    lines = [
        *_header(report),
        "",
        _policy_table(report),
        "",
        "router decisions: "
        + ", ".join(f"{k} {_pct(v)}" for k, v in r.cost.reason_share.items())
        + f"; cascaded {_pct(r.cost.cascade_rate)}",
        *_worst_lines(report, worst),
    ]
    return "\n".join(lines)
