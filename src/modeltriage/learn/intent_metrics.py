"""Scores of one policy's predictions on labelled data: pure functions, no I/O.

Inputs are parallel lists of gold and predicted labels, where ``None`` means out of scope
on both sides (a ``no_match`` decision predicts ``None``). Accuracy, macro-F1,
out-of-scope recall and precision, per-intent precision and recall, the worst confusions,
and the cost of the decisions against always-flagship.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

from modeltriage.core.config import RouterConfig
from modeltriage.core.costs import flagship_cost_usd, savings
from modeltriage.core.decision import Verdict

Label = str | None

# Confused pairs kept in a report (the terminal shows fewer).
REPORT_CONFUSIONS = 50


@dataclass(frozen=True)
class IntentStats:
    """One in-scope intent of the gold labels. ``precision`` is None when the intent was
    never predicted (undefined, counted as 0 in F1)."""

    intent: str
    support: int
    predicted: int
    correct: int
    precision: float | None
    recall: float
    f1: float


@dataclass(frozen=True)
class Confusion:
    """Rows of intent ``gold`` predicted as intent ``predicted``, with the first one's text."""

    gold: str
    predicted: str
    count: int
    example: str


@dataclass(frozen=True)
class Scores:
    """Every metric of one policy on one labelled set. A rate is None when undefined (no
    row to compute it over)."""

    rows: int
    in_scope_rows: int
    out_of_scope_rows: int
    in_scope_accuracy: float | None
    macro_f1: float | None
    oos_recall: float | None
    oos_precision: float | None
    overall_accuracy: float | None
    per_intent: tuple[IntentStats, ...]
    worst_confusions: tuple[Confusion, ...]


def same_length(*columns: Sequence[object]) -> int:
    """The common length of parallel columns; ValueError when they differ."""
    lengths = {len(c) for c in columns}
    if len(lengths) > 1:
        raise ValueError(f"columns differ in length: {sorted(lengths)}")
    return lengths.pop() if lengths else 0


def _ratio(part: int, whole: int) -> float | None:
    return None if whole == 0 else part / whole


def confusion_counts(
    gold: Sequence[Label], predicted: Sequence[Label]
) -> Counter[tuple[Label, Label]]:
    """Count of each (gold, predicted) pair, the diagonal included."""
    same_length(gold, predicted)
    return Counter(zip(gold, predicted, strict=True))


def overall_accuracy(gold: Sequence[Label], predicted: Sequence[Label]) -> float | None:
    """Accuracy over all rows, out of scope being one more class."""
    n = same_length(gold, predicted)
    return _ratio(sum(g == p for g, p in zip(gold, predicted, strict=True)), n)


def in_scope_accuracy(gold: Sequence[Label], predicted: Sequence[Label]) -> float | None:
    """Accuracy over in-scope rows; one rejected as out of scope counts as wrong."""
    same_length(gold, predicted)
    pairs = [(g, p) for g, p in zip(gold, predicted, strict=True) if g is not None]
    return _ratio(sum(g == p for g, p in pairs), len(pairs))


def oos_recall(gold: Sequence[Label], predicted: Sequence[Label]) -> float | None:
    """Share of out-of-scope rows predicted out of scope."""
    same_length(gold, predicted)
    flagged = [p is None for g, p in zip(gold, predicted, strict=True) if g is None]
    return _ratio(sum(flagged), len(flagged))


def oos_precision(gold: Sequence[Label], predicted: Sequence[Label]) -> float | None:
    """Share of rows predicted out of scope that are out of scope."""
    same_length(gold, predicted)
    right = [g is None for g, p in zip(gold, predicted, strict=True) if p is None]
    return _ratio(sum(right), len(right))


def per_intent_stats(gold: Sequence[Label], predicted: Sequence[Label]) -> list[IntentStats]:
    """Precision, recall and F1 of each in-scope intent of ``gold``, by name.

    A prediction of an intent on an out-of-scope row is a false positive of that intent.
    """
    counts = confusion_counts(gold, predicted)
    support: Counter[str] = Counter()
    predicted_as: Counter[str] = Counter()
    for (g, p), count in counts.items():
        if g is not None:
            support[g] += count
        if p is not None:
            predicted_as[p] += count
    stats = []
    for intent in sorted(support):
        correct = counts[(intent, intent)]
        n_pred = predicted_as[intent]
        stats.append(
            IntentStats(
                intent=intent,
                support=support[intent],
                predicted=n_pred,
                correct=correct,
                precision=_ratio(correct, n_pred),
                recall=correct / support[intent],
                # 2PR/(P+R) written in counts: defined (0) even when never predicted.
                f1=2 * correct / (support[intent] + n_pred),
            )
        )
    return stats


def macro_f1(stats: Sequence[IntentStats]) -> float | None:
    """Unweighted mean F1 over the in-scope intents of the gold labels."""
    return None if not stats else sum(s.f1 for s in stats) / len(stats)


def worst_confusions(
    gold: Sequence[Label],
    predicted: Sequence[Label],
    texts: Sequence[str],
    limit: int | None = None,
) -> list[Confusion]:
    """Intent-to-intent mistakes, most frequent first (ties by name), each with the text
    of its first row. Out-of-scope mistakes are left to the OOS recall and precision."""
    same_length(gold, predicted, texts)
    counts: Counter[tuple[str, str]] = Counter()
    examples: dict[tuple[str, str], str] = {}
    for g, p, text in zip(gold, predicted, texts, strict=True):
        if g is None or p is None or g == p:
            continue
        counts[(g, p)] += 1
        examples.setdefault((g, p), text)
    ranked = sorted(counts.items(), key=lambda item: (-item[1], item[0]))
    return [Confusion(g, p, n, examples[(g, p)]) for (g, p), n in ranked[:limit]]


def score(
    gold: Sequence[Label],
    predicted: Sequence[Label],
    texts: Sequence[str],
    confusions: int | None = REPORT_CONFUSIONS,
) -> Scores:
    """All the metrics of one policy's predictions."""
    n = same_length(gold, predicted, texts)
    stats = per_intent_stats(gold, predicted)
    oos = sum(g is None for g in gold)
    return Scores(
        rows=n,
        in_scope_rows=n - oos,
        out_of_scope_rows=oos,
        in_scope_accuracy=in_scope_accuracy(gold, predicted),
        macro_f1=macro_f1(stats),
        oos_recall=oos_recall(gold, predicted),
        oos_precision=oos_precision(gold, predicted),
        overall_accuracy=overall_accuracy(gold, predicted),
        per_intent=tuple(stats),
        worst_confusions=tuple(worst_confusions(gold, predicted, texts, confusions)),
    )


@dataclass(frozen=True)
class CostSummary:
    """Estimated cost of a policy's decisions against sending every request to the
    flagship tier's cheapest model."""

    total_usd: float
    per_request_usd: float
    flagship_total_usd: float
    savings: float | None
    tier_share: dict[str, float]
    reason_share: dict[str, float]
    cascade_rate: float


def _shares(counter: Counter[str], total: int) -> dict[str, float]:
    return {key: count / total for key, count in sorted(counter.items())}


def cost_summary(verdicts: Sequence[Verdict], config: RouterConfig) -> CostSummary:
    """What ``verdicts`` cost, and their shares per tier and reason; savings are None when
    the flagship costs nothing."""
    n = len(verdicts)
    total = sum(v.estimated_cost_usd for v in verdicts)
    flagship = sum(flagship_cost_usd(config, v.input_tokens) for v in verdicts)
    return CostSummary(
        total_usd=total,
        per_request_usd=total / n if n else 0.0,
        flagship_total_usd=flagship,
        savings=None if flagship == 0 else savings(total, flagship),
        tier_share=_shares(Counter(v.tier for v in verdicts), n),
        reason_share=_shares(Counter(v.reason for v in verdicts), n),
        cascade_rate=sum(v.cascaded for v in verdicts) / n if n else 0.0,
    )
