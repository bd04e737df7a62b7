"""Labelled-data evaluation: how well does routing find the intent, and what does it cost?

Two layers, kept apart:

- **Metrics** (pure, no I/O): functions over parallel lists of gold and predicted labels,
  where ``None`` means out of scope on both sides (a ``no_match`` decision predicts
  ``None``). Accuracy, macro-F1, out-of-scope recall and precision, per-intent precision
  and recall, the worst confusions, the choice of a no-match floor and the cost summary.
- **Orchestration**: :func:`evaluate_intents` embeds every text once, builds routers over
  the training rows with ``Router.in_memory``, routes the test rows, and scores the
  router beside two baselines: plain top-1 nearest neighbour (``max``, ``top_k`` 1, same
  floor) and always-flagship (cost only).

Every intent built from labelled data has the same difficulty, so all intents share one
tier and a low-margin cascade never changes the predicted intent: the prediction is
``decision.intent`` (``None`` for ``no_match``).
"""

from __future__ import annotations

import importlib
import random
import sys
import time
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any, Protocol

import numpy as np

from modeltriage.core.config import Aggregation, RouterConfig, Scoring
from modeltriage.core.costs import cheapest_in_tier, flagship_cost_usd
from modeltriage.core.decision import Decision, Verdict
from modeltriage.core.encoders import Encoder, Vectors
from modeltriage.core.inputs import check_text
from modeltriage.core.intents import Intent, IntentSet
from modeltriage.core.policy import decide
from modeltriage.errors import ModelTriageError
from modeltriage.learn.datasets import LabelledText, intent_set_from_labelled
from modeltriage.router import Router, route_all

Label = str | None

# Share of each intent's training rows held out to choose the floor with --tune-floor.
HELD_OUT_SHARE = 0.2
# Candidate no-match floors: cosine similarity in steps of 0.005.
FLOOR_GRID: tuple[float, ...] = tuple(round(i * 0.005, 3) for i in range(201))
# Confused pairs kept in a report (the terminal shows fewer).
REPORT_CONFUSIONS = 50
EMBED_CHUNK = 512


class EvaluationError(ModelTriageError):
    """The labelled data cannot be evaluated as asked (no rows, nothing to tune on...)."""


# --------------------------------------------------------------------------- metrics


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


def _same_length(*columns: Sequence[object]) -> int:
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
    _same_length(gold, predicted)
    return Counter(zip(gold, predicted, strict=True))


def overall_accuracy(gold: Sequence[Label], predicted: Sequence[Label]) -> float | None:
    """Accuracy over all rows, out of scope being one more class."""
    n = _same_length(gold, predicted)
    return _ratio(sum(g == p for g, p in zip(gold, predicted, strict=True)), n)


def in_scope_accuracy(gold: Sequence[Label], predicted: Sequence[Label]) -> float | None:
    """Accuracy over in-scope rows; one rejected as out of scope counts as wrong."""
    _same_length(gold, predicted)
    pairs = [(g, p) for g, p in zip(gold, predicted, strict=True) if g is not None]
    return _ratio(sum(g == p for g, p in pairs), len(pairs))


def oos_recall(gold: Sequence[Label], predicted: Sequence[Label]) -> float | None:
    """Share of out-of-scope rows predicted out of scope."""
    _same_length(gold, predicted)
    flagged = [p is None for g, p in zip(gold, predicted, strict=True) if g is None]
    return _ratio(sum(flagged), len(flagged))


def oos_precision(gold: Sequence[Label], predicted: Sequence[Label]) -> float | None:
    """Share of rows predicted out of scope that are out of scope."""
    _same_length(gold, predicted)
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
    _same_length(gold, predicted, texts)
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
    n = _same_length(gold, predicted, texts)
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


def apply_floor(
    predicted: Sequence[Label], confidences: Sequence[float], floor: float
) -> list[Label]:
    """Predictions with a no-match floor: below it the router predicts out of scope. The
    floor is checked before anything else in ``decide``, so it changes nothing else."""
    _same_length(predicted, confidences)
    return [None if c < floor else p for p, c in zip(predicted, confidences, strict=True)]


def choose_floor(
    gold: Sequence[Label],
    predicted: Sequence[Label],
    confidences: Sequence[float],
    floors: Sequence[float] = FLOOR_GRID,
) -> float:
    """The floor that maximises overall accuracy (out of scope as a class), given
    predictions made without a floor; among tied floors, the middle one, so the choice
    does not sit on the edge of a plateau."""
    if _same_length(gold, predicted, confidences) == 0 or not floors:
        raise ValueError("need at least one row and one candidate floor")
    is_oos = np.array([g is None for g in gold])
    correct = np.array([g == p for g, p in zip(gold, predicted, strict=True)])
    grid = np.asarray(floors, dtype=np.float64)
    rejected = np.asarray(confidences, dtype=np.float64)[None, :] < grid[:, None]
    accuracy = np.where(rejected, is_oos[None, :], correct[None, :]).mean(axis=1)
    tied = np.flatnonzero(accuracy >= accuracy.max() - 1e-12)
    return float(grid[tied[len(tied) // 2]])


def split_held_out(
    rows: Sequence[LabelledText], share: float, seed: int
) -> tuple[list[LabelledText], list[LabelledText]]:
    """(kept, held out): ``share`` of each intent's rows, drawn with ``seed``, is held out,
    and so is every out-of-scope row (they never become exemplars anyway). Each intent
    keeps at least one row."""
    by_intent: dict[str, list[LabelledText]] = {}
    held: list[LabelledText] = []
    for row in rows:
        if row.intent is None:
            held.append(row)
        else:
            by_intent.setdefault(row.intent, []).append(row)
    rng = random.Random(seed)
    kept: list[LabelledText] = []
    for name in sorted(by_intent):
        group = list(by_intent[name])
        rng.shuffle(group)
        cut = min(round(len(group) * share), len(group) - 1)
        held.extend(group[:cut])
        kept.extend(group[cut:])
    return kept, held


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
    n = len(verdicts)
    total = sum(v.estimated_cost_usd for v in verdicts)
    flagship = sum(flagship_cost_usd(config, v.input_tokens) for v in verdicts)
    return CostSummary(
        total_usd=total,
        per_request_usd=total / n if n else 0.0,
        flagship_total_usd=flagship,
        savings=None if flagship == 0 else 1 - total / flagship,
        tier_share=_shares(Counter(v.tier for v in verdicts), n),
        reason_share=_shares(Counter(v.reason for v in verdicts), n),
        cascade_rate=sum(v.cascaded for v in verdicts) / n if n else 0.0,
    )


def with_policy(
    config: RouterConfig,
    *,
    top_k: int | None = None,
    aggregation: Aggregation | None = None,
    floor: float | None = None,
    disable_floor: bool = False,
) -> RouterConfig:
    """``config`` with the scoring and floor overridden where given (validated)."""
    scoring = Scoring.model_validate(
        config.scoring.model_dump()
        | ({} if top_k is None else {"top_k": top_k})
        | ({} if aggregation is None else {"aggregation": aggregation})
    )
    thresholds = config.thresholds
    if disable_floor or floor is not None:
        thresholds = type(thresholds).model_validate(
            thresholds.model_dump() | {"min_similarity": None if disable_floor else floor}
        )
    return config.model_copy(update={"scoring": scoring, "thresholds": thresholds})


# --------------------------------------------------------------------------- embedding


class _Bar(Protocol):
    def update(self, n: int) -> object: ...

    def close(self) -> None: ...


class _NoBar:
    def update(self, n: int) -> None:
        pass

    def close(self) -> None:
        pass


def progress_bar(total: int, description: str, enabled: bool = True) -> _Bar:
    """A tqdm bar on stderr (shown only when stderr is a terminal), or a silent stand-in.
    tqdm comes with sentence-transformers but is no dependency of modeltriage's own."""
    if not enabled or total == 0:
        return _NoBar()
    try:
        tqdm = importlib.import_module("tqdm").tqdm
    except ImportError:
        return _NoBar()
    bar: _Bar = tqdm(total=total, desc=description, unit="text", file=sys.stderr, disable=None)
    return bar


class CachingEncoder:
    """An encoder that embeds each distinct text once, in chunks, with a progress bar.

    The test rows, the held-out rows and the routers built over overlapping exemplar sets
    then share a single embedding pass: embedding is nearly all of an evaluation's time.
    """

    def __init__(
        self, encoder: Encoder, *, chunk_size: int = EMBED_CHUNK, progress: bool = True
    ) -> None:
        self._encoder = encoder
        self._chunk_size = chunk_size
        self._progress = progress
        self._vectors: dict[str, Vectors] = {}

    @property
    def model_id(self) -> str:
        return self._encoder.model_id

    @property
    def dim(self) -> int:
        return self._encoder.dim

    @property
    def cached(self) -> int:
        return len(self._vectors)

    def embed(self, texts: Sequence[str], description: str = "embedding") -> int:
        """Embed the texts not seen yet; returns how many that was."""
        todo = [t for t in dict.fromkeys(texts) if t not in self._vectors]
        bar = progress_bar(len(todo), description, self._progress)
        try:
            for start in range(0, len(todo), self._chunk_size):
                chunk = todo[start : start + self._chunk_size]
                vectors = self._encoder.encode(chunk)
                if vectors.shape != (len(chunk), self.dim):
                    raise ValueError(
                        f"encoder {self.model_id} returned shape {vectors.shape}, "
                        f"expected ({len(chunk)}, {self.dim})"
                    )
                self._vectors.update(zip(chunk, vectors, strict=True))
                bar.update(len(chunk))
        finally:
            bar.close()
        return len(todo)

    def encode(self, texts: Sequence[str]) -> Vectors:
        self.embed(texts)
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        return np.ascontiguousarray(np.stack([self._vectors[t] for t in texts]), dtype=np.float32)


# --------------------------------------------------------------------------- orchestration


@dataclass(frozen=True)
class PolicyResult:
    name: str
    aggregation: Aggregation
    top_k: int
    scores: Scores
    cost: CostSummary


@dataclass(frozen=True)
class FloorTuning:
    """How ``--tune-floor`` chose the floor: on held-out training rows, never the test set."""

    floor: float
    held_out_rows: int
    held_out_in_scope: int
    held_out_out_of_scope: int
    tuning_exemplars: int
    overall_accuracy: float | None
    oos_recall: float | None
    oos_precision: float | None


@dataclass(frozen=True)
class IntentEvaluation:
    exemplars: int
    intents: int
    per_intent: int | None
    seed: int
    train_rows: int
    train_out_of_scope_rows: int
    margin: float | None
    floor: float | None
    floor_source: str
    floor_tuning: FloorTuning | None
    router: PolicyResult
    top1: PolicyResult
    flagship_model: str
    flagship_total_usd: float
    embedded_texts: int
    seconds: float

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _build_set(
    rows: Sequence[LabelledText], config: RouterConfig, per_intent: int | None, seed: int
) -> IntentSet:
    intent_set = intent_set_from_labelled(rows, config, per_intent=per_intent, seed=seed)
    if not intent_set.intents:
        raise EvaluationError("the training rows have no in-scope row (every intent is null)")
    return intent_set


def first_refused(rows: Sequence[LabelledText], max_bytes: int) -> tuple[int, str] | None:
    """Index of the first row the router would refuse to route (``limits.max_text_bytes``,
    lone surrogates) and why, or None: found before embedding, not minutes into routing."""
    for position, row in enumerate(rows):
        try:
            check_text(row.text, max_bytes)
        except ModelTriageError as exc:
            return position, str(exc)
    return None


def _exemplar_texts(intent_set: IntentSet) -> list[str]:
    return [e.text for intent in intent_set.intents for e in intent.exemplars]


def _tune_floor(
    intent_set: IntentSet, held: Sequence[LabelledText], encoder: Encoder
) -> FloorTuning:
    router = Router.in_memory(intent_set, encoder)
    decisions = route_all(router, [r.text for r in held], explain=True)
    gold = [r.intent for r in held]
    predicted = [d.intent for d in decisions]
    confidences = [d.confidence for d in decisions]
    floor = choose_floor(gold, predicted, confidences)
    at_floor = apply_floor(predicted, confidences, floor)
    oos = sum(g is None for g in gold)
    return FloorTuning(
        floor=floor,
        held_out_rows=len(held),
        held_out_in_scope=len(held) - oos,
        held_out_out_of_scope=oos,
        tuning_exemplars=len(_exemplar_texts(intent_set)),
        overall_accuracy=overall_accuracy(gold, at_floor),
        oos_recall=oos_recall(gold, at_floor),
        oos_precision=oos_precision(gold, at_floor),
    )


def _top1_verdicts(
    decisions: Sequence[Decision], config: RouterConfig, intents: Mapping[str, Intent]
) -> list[Verdict]:
    """Plain nearest neighbour from the router's own neighbours: nothing re-embedded."""
    return [decide(d.neighbours[:1], config, intents, d.input_tokens) for d in decisions]


def evaluate_intents(
    train: Sequence[LabelledText],
    test: Sequence[LabelledText],
    config: RouterConfig,
    encoder: Encoder,
    *,
    per_intent: int | None = None,
    seed: int = 0,
    top_k: int | None = None,
    aggregation: Aggregation | None = None,
    floor: float | None = None,
    tune_floor: bool = False,
    progress: bool = True,
) -> IntentEvaluation:
    """Route every ``test`` row with a router whose exemplars are the ``train`` rows (all,
    or ``per_intent`` sampled with ``seed``), and score it against the baselines.

    The floor is ``floor`` if given, else chosen with ``tune_floor``, else the config's
    ``thresholds.min_similarity``. Tuning holds out 20% of each intent's training rows
    plus every out-of-scope one, builds a router the same way (all, or ``per_intent``)
    from the rest, and picks the floor on the held-out rows; the evaluated router then
    uses the floor with exemplars from all training rows. The test rows are never seen.
    Every text is embedded once, however many routers use it.
    """
    started = time.perf_counter()
    if not test:
        raise EvaluationError("the test set has no rows")
    if floor is not None and tune_floor:
        raise EvaluationError("give a floor or ask to tune it, not both")
    config = with_policy(config, top_k=top_k, aggregation=aggregation, floor=floor)
    # Held-out training rows are routed too when the floor is tuned.
    for name, rows in (("test", test), ("training", train if tune_floor else [])):
        refused = first_refused(rows, config.limits.max_text_bytes)
        if refused is not None:
            raise EvaluationError(f"{name} row {refused[0] + 1} cannot be routed: {refused[1]}")
    final_set = _build_set(train, config, per_intent, seed)
    needed = [*_exemplar_texts(final_set), *(r.text for r in test)]

    tuning_set: IntentSet | None = None
    held: list[LabelledText] = []
    if tune_floor:
        kept, held = split_held_out(train, HELD_OUT_SHARE, seed)
        if not any(r.intent is None for r in held):
            raise EvaluationError(
                "tuning the floor needs out-of-scope rows (intent null) in the training "
                "rows: without them every floor above 0 only loses in-scope rows"
            )
        tuning_set = _build_set(kept, with_policy(config, disable_floor=True), per_intent, seed)
        needed += [*_exemplar_texts(tuning_set), *(r.text for r in held)]

    cache = CachingEncoder(encoder, progress=progress)
    cache.embed(needed, f"embedding {len(set(needed)):,} texts")

    tuning = None
    floor_source = "--floor" if floor is not None else "config"
    if tuning_set is not None:
        tuning = _tune_floor(tuning_set, held, cache)
        config = with_policy(config, floor=tuning.floor)
        final_set = final_set.model_copy(update={"config": config})
        floor_source = "tuned"

    router = Router.in_memory(final_set, cache)
    texts = [r.text for r in test]
    gold = [r.intent for r in test]
    decisions = route_all(router, texts, explain=True)
    intents = {i.name: i for i in final_set.intents}
    top1_config = with_policy(config, top_k=1, aggregation="max")
    baseline = _top1_verdicts(decisions, top1_config, intents)

    def result(name: str, verdicts: Sequence[Verdict], policy: RouterConfig) -> PolicyResult:
        return PolicyResult(
            name=name,
            aggregation=policy.scoring.aggregation,
            top_k=policy.scoring.top_k,
            scores=score(gold, [v.intent for v in verdicts], texts),
            cost=cost_summary(verdicts, policy),
        )

    router_result = result("router", decisions, config)
    # The name only: which flagship model is cheapest can depend on a request's length,
    # so the flagship cost itself is priced request by request.
    output = config.cost.expected_output_tokens
    flagship = cheapest_in_tier(config, config.flagship_tier, 1, output)
    return IntentEvaluation(
        exemplars=router.manifest.exemplars,
        intents=router.manifest.intents,
        per_intent=per_intent,
        seed=seed,
        train_rows=len(train),
        train_out_of_scope_rows=sum(r.intent is None for r in train),
        margin=config.thresholds.margin,
        floor=config.thresholds.min_similarity,
        floor_source=floor_source,
        floor_tuning=tuning,
        router=router_result,
        top1=result("top-1 nearest neighbour", baseline, top1_config),
        flagship_model=flagship.name,
        flagship_total_usd=router_result.cost.flagship_total_usd,
        embedded_texts=cache.cached,
        seconds=round(time.perf_counter() - started, 1),
    )


# --------------------------------------------------------------------------- report


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


def format_report(report: IntentEvaluation, worst: int = 10) -> str:
    """The terminal view: headline metrics of every policy, then the router's worst
    confusions and intents (the JSON report has them all)."""
    r = report.router
    s = r.scores
    sampled = (
        "all in-scope rows"
        if report.per_intent is None
        else (f"{report.per_intent} per intent, seed {report.seed}")
    )
    if report.floor_tuning is not None:
        t = report.floor_tuning
        floor = (
            f"floor {t.floor:.3f}, tuned on {t.held_out_rows:,} held-out training rows "
            f"({t.held_out_in_scope:,} in scope, {t.held_out_out_of_scope:,} out of scope; "
            f"{t.tuning_exemplars:,} exemplars): there overall {_pct(t.overall_accuracy)}, "
            f"OOS recall {_pct(t.oos_recall)}, precision {_pct(t.oos_precision)}"
        )
    else:
        value = "none" if report.floor is None else f"{report.floor:.3f}"
        floor = f"floor {value} (from {report.floor_source})"
    lines = [
        f"exemplars: {report.exemplars:,} of {report.intents} intents ({sampled}) from "
        f"{report.train_rows:,} training rows",
        f"test: {s.rows:,} rows ({s.in_scope_rows:,} in scope, {s.out_of_scope_rows:,} out "
        "of scope)",
        f"router: {r.aggregation}, top_k {r.top_k}, margin {report.margin}; {floor}",
        "",
        render_table(
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
        ),
        "",
        "router decisions: "
        + ", ".join(f"{k} {_pct(v)}" for k, v in r.cost.reason_share.items())
        + f"; cascaded {_pct(r.cost.cascade_rate)}",
    ]
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
    return "\n".join(lines)
