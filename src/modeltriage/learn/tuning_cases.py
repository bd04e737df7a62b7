"""The cases `modeltriage tune` sweeps, from one of three sources: a labelled file, the
decision log, or a file of per-model outcomes. Each source also says how quality is
judged on its cases, in a sentence the tune report prints."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from modeltriage.core.config import RouterConfig
from modeltriage.core.costs import estimate_tokens
from modeltriage.core.decision import Neighbour
from modeltriage.core.intents import Intent
from modeltriage.errors import InputError
from modeltriage.learn.checked_answers import CheckedAnswers, checked_answers
from modeltriage.learn.datasets import read_intents_jsonl
from modeltriage.learn.outcome_data import read_outcomes_jsonl
from modeltriage.learn.outcome_eval import CONFIDENCE_GRID, outcome_cases
from modeltriage.learn.tuning import Case, QualityModel, cases_from_routes
from modeltriage.log.entries import EventEntry, FeedbackEntry, LogEntry
from modeltriage.log.sample import LogSample
from modeltriage.router import Router, route_all


@dataclass(frozen=True)
class TuningCases:
    """Cases to tune on, how their quality is judged, and the thresholds.difficulty_confidence
    values worth sweeping (only outcomes measure what a confidence changes)."""

    cases: list[Case]
    quality: QualityModel
    source: str
    confidences: tuple[float | None, ...] = (None,)


def _with_cascade_note(router: Router, source: str) -> str:
    margin = router.config.thresholds.cascade_margin
    if margin is None:
        return source
    return (
        f"{source}; cascade plans (margin below cascade_margin {margin}) "
        "are counted as escalated: both calls paid, the plan's model answers"
    )


def _quality(router: Router) -> QualityModel:
    return QualityModel(router.config, {i.name: i for i in router.intent_set.intents})


def labelled_cases(router: Router, path: Path, *, log: bool = True) -> TuningCases:
    """Cases from a labelled file; a request is served well when its tier is at least as
    strong as its labelled difficulty needs. ``log=False`` keeps the routing of the file
    out of the decision log."""
    rows = read_intents_jsonl(path)
    known = {intent.name for intent in router.intent_set.intents}
    unknown = sorted({r.intent for r in rows if r.intent is not None} - known)
    if unknown:
        raise InputError(f"{path}: labels name intents this router lacks: {unknown[:5]}")
    texts = [r.text for r in rows]
    decisions = route_all(router, texts, explain=True, log=log)
    cases = cases_from_routes(
        texts,
        [d.neighbours for d in decisions],
        router.config,
        labels=[r.intent for r in rows],
        difficulties=[r.difficulty for r in rows],
    )
    source = (
        "quality is estimated from labels: a request is served well when it reaches "
        "a tier at least as strong as its labelled difficulty needs"
    )
    return TuningCases(cases, _quality(router), _with_cascade_note(router, source))


def outcomes_cases(router: Router, path: Path) -> TuningCases:
    """Cases from an outcomes file, scored by each chosen model's real quality and cost;
    the router's models must all be the file's."""
    outcome_rows = read_outcomes_jsonl(path)
    names = {m.name for m in router.config.models}
    missing = names - set().union(*(r.outcomes for r in outcome_rows))
    if missing:
        raise InputError(
            f"{path}: no outcomes for the router's models {sorted(missing)}; "
            "make the intents with `modeltriage learn`"
        )
    usable = [r for r in outcome_rows if names <= set(r.outcomes)]
    source = (
        f"{len(usable)} prompts with outcomes for every router model "
        f"({len(outcome_rows) - len(usable)} skipped); quality and cost are the chosen model's "
        "real ones"
    )
    return TuningCases(
        outcome_cases(router, usable),
        _quality(router),
        _with_cascade_note(router, source),
        confidences=CONFIDENCE_GRID,
    )


def log_cases(
    router: Router,
    entries: Sequence[LogEntry],
    feedback: Sequence[FeedbackEntry],
    log_url: str,
    *,
    log: bool = True,
    events: Sequence[EventEntry] | None = None,
    model_feedback: Mapping[str, tuple[int, float]] | None = None,
    sampled_from: tuple[int, int] | None = None,
) -> TuningCases:
    """Cases from logged decisions with their text (re-routed for their neighbours), with
    feedback as measured quality; ``log_url`` names the log in messages. ``log=False``
    keeps the re-routing out of the decision log. With ``events`` (the log's answer
    checks), cascade plans are priced by their checked answers (`tune --learn-cascade`).
    ``entries`` a sample of a log (``sampled_from``: its decisions with a text, and all):
    ``model_feedback`` is the whole log's (:class:`modeltriage.log.sample.LogSample`)."""
    with_text = [e for e in entries if e.text is not None]
    if not with_text:
        raise InputError(f"--log: no logged decision with its text in {log_url}")
    answers = None
    if events is not None:
        answers = checked_answers(with_text, events, feedback)
        if answers.checked == 0:
            raise InputError(
                f"--learn-cascade: no cascade plan in {log_url} was checked (POST /escalate "
                "with its decision_id), so nothing says how plans fare"
            )
    decisions = route_all(router, [e.text or "" for e in with_text], explain=True, log=log)
    cases, quality = cases_from_log(
        with_text,
        feedback,
        [d.neighbours for d in decisions],
        router.config,
        {i.name: i for i in router.intent_set.intents},
        answers,
        model_feedback,
    )
    skipped = len(entries) - len(with_text)
    what = f"{len(with_text)} logged requests"
    if sampled_from is not None:
        with_texts, total = sampled_from
        what = f"a random sample of {len(with_text)} of {with_texts} logged requests"
        skipped = total - with_texts
    source = (
        f"{what} ({skipped} stored as a hash only, skipped); "
        "quality is measured where feedback exists for the chosen model, else estimated "
        "as the mean feedback of the chosen tier"
    )
    if answers is None:
        return TuningCases(cases, quality, _with_cascade_note(router, source))
    rate = answers.escalation_rate or 0.0

    def mean(q: float | None) -> str:
        return "no feedback" if q is None else f"mean feedback {q:.3f}"

    source += (
        f"; cascade plans priced by {answers.checked} checked answers ({100 * rate:.1f}% "
        f"escalated; kept: {mean(answers.kept_quality)}, escalated: "
        f"{mean(answers.escalated_quality)}): a request's own check where it had one, "
        "else that rate"
    )
    return TuningCases(cases, quality, source)


def cases_from_log(
    entries: Sequence[LogEntry],
    feedback: Sequence[FeedbackEntry],
    neighbours: Sequence[Sequence[Neighbour]],
    config: RouterConfig,
    intents: Mapping[str, Intent],
    answers: CheckedAnswers | None = None,
    model_feedback: Mapping[str, tuple[int, float]] | None = None,
) -> tuple[list[Case], QualityModel]:
    """Cases from logged decisions (re-routed for their neighbours) and their feedback;
    with ``answers`` (:func:`~modeltriage.learn.checked_answers.checked_answers`), each
    case carries its plan's logged check and plans are priced by their checks.

    A feedback row counts for the model it names, else for the model the decision
    chose. Models nobody measured on a request are judged by their tier's mean feedback
    over the whole log (``model_feedback``: (rows, summed quality) per model, when
    ``entries`` are a sample of it); the flagship, if never measured, is assumed
    perfect (1.0).
    """
    by_decision: dict[str, dict[str, list[float]]] = {}
    chosen = {e.decision_id: e for e in entries}
    tier_of = {m.name: m.tier for m in config.models}
    per_tier: dict[str, list[float]] = {}
    for fb in feedback:
        entry = chosen.get(fb.decision_id)
        if entry is None:
            continue
        model = fb.model or entry.model
        by_decision.setdefault(fb.decision_id, {}).setdefault(model, []).append(fb.quality)
        tier = tier_of.get(model)
        if tier is not None:
            per_tier.setdefault(tier, []).append(fb.quality)
    tier_quality = {tier: sum(q) / len(q) for tier, q in per_tier.items()}
    if model_feedback is not None:
        sums: dict[str, tuple[int, float]] = {}
        for model, (n, total) in model_feedback.items():
            tier = tier_of.get(model)
            if tier is not None:
                had = sums.get(tier, (0, 0.0))
                sums[tier] = (had[0] + n, had[1] + total)
        tier_quality = {tier: total / n for tier, (n, total) in sums.items() if n}
    tier_quality.setdefault(config.flagship_tier, 1.0)
    cases = [
        Case(
            neighbours=tuple(neighbours[i]),
            input_tokens=entry.input_tokens
            if entry.input_tokens is not None
            else estimate_tokens(entry.text or "", config.cost.chars_per_token),
            measured={
                model: sum(q) / len(q)
                for model, q in by_decision.get(entry.decision_id, {}).items()
            },
            check=None if answers is None else answers.verdicts.get(entry.decision_id),
        )
        for i, entry in enumerate(entries)
    ]
    return cases, QualityModel(config, intents, tier_quality, answers)


def sampled_log_cases(
    router: Router,
    sample: LogSample,
    log_url: str,
    events: Sequence[EventEntry] | None = None,
) -> TuningCases:
    """:func:`log_cases` over a sample of the log (:func:`modeltriage.log.sample.sample_log`),
    without logging the re-routing."""
    if not sample.sampled:
        return log_cases(router, sample.entries, sample.feedback, log_url, log=False, events=events)
    return log_cases(
        router,
        sample.entries,
        sample.feedback,
        log_url,
        log=False,
        events=events,
        model_feedback=sample.model_feedback,
        sampled_from=(sample.with_text, sample.total),
    )
