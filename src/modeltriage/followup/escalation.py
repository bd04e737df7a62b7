"""Answer-time escalation: check a cheaper model's answer and name the model to escalate
to, from the logged decision's plan, the request's routed chain, or the tier above."""

from __future__ import annotations

from collections.abc import Callable

from modeltriage.core.config import RouterConfig
from modeltriage.core.decision import Decision
from modeltriage.core.inputs import check_answer_size, check_model, check_text
from modeltriage.errors import InputError
from modeltriage.followup.answers import (
    Answer,
    Escalation,
    EscalationCheck,
    check_answer,
    next_tier_model,
    stronger_model,
)
from modeltriage.followup.records import DecisionRecords
from modeltriage.log.entries import EventEntry, LogEntry


def escalate(
    config: RouterConfig,
    records: DecisionRecords,
    route: Callable[[str], Decision],
    answer: Answer,
    *,
    model: str | None = None,
    text: str | None = None,
    decision_id: str | None = None,
) -> Escalation:
    """Check ``answer`` (``config.escalation``) and, if it should be escalated, name the
    next model up: the logged decision's cascade plan, then its fallback chain, when
    ``decision_id`` is given (needs the decision log); the request's own routed chain
    when ``text`` is given (``route`` re-routes it without logging); else the cheapest
    model of the tier above ``model``. With a decision log, the check is recorded."""
    _check_inputs(config, answer, model, text, decision_id)
    logged = None
    if decision_id is not None and (records.logger is not None or (model is None and text is None)):
        logged = records.decision(decision_id)
    check = check_answer(
        answer.answer,
        config.escalation,
        confidence=None if answer.confidence is None else float(answer.confidence),
        logprobs=None if answer.logprobs is None else [float(x) for x in answer.logprobs],
        finish_reason=answer.finish_reason,
        second_answer=answer.second_answer,
        choices=answer.choices,
        second_answer_required=None if logged is None else logged.second_opinion,
        more_answers=answer.more_answers or (),
    )
    answered_by, to_model = _where_to(config, check, route, logged, model, text)
    if answered_by is not None:
        records.record(EventEntry("escalation", answered_by, to_model, check.detail, decision_id))
    return Escalation(
        escalate=check.escalate, to_model=to_model, reasons=check.reasons, detail=check.detail
    )


def _check_inputs(
    config: RouterConfig,
    answer: Answer,
    model: str | None,
    text: str | None,
    decision_id: str | None,
) -> None:
    settings = config.escalation
    given = [("answer", answer.answer), ("second_answer", answer.second_answer)]
    given += [(f"more_answers[{i}]", a) for i, a in enumerate(answer.more_answers or ())]
    for name, value in given:
        if value is not None:
            check_answer_size(name, value, settings.max_answer_bytes)
    if text is None and model is None and decision_id is None:
        raise InputError(
            "give `model` (the model that answered), `text` (the request) or the "
            "`decision_id` of a logged decision"
        )
    if text is not None:
        check_text(text, config.limits.max_text_bytes)
    if model is not None:
        check_model(config, model)  # refuses an unknown model up front


def _where_to(
    config: RouterConfig,
    check: EscalationCheck,
    route: Callable[[str], Decision],
    logged: LogEntry | None,
    model: str | None,
    text: str | None,
) -> tuple[str | None, str | None]:
    """(the model that answered, the model to escalate to or None)."""
    if logged is not None:
        answered_by = logged.model if model is None else model
        if not check.escalate:
            return answered_by, None
        plan = [] if logged.cascade_to is None else [logged.cascade_to]
        candidates = [*plan, logged.model, *logged.fallbacks]
        tokens = 0 if logged.input_tokens is None else logged.input_tokens
        return answered_by, stronger_model(config, answered_by, candidates, tokens)
    if text is not None and (check.escalate or model is None):
        # The request's own chain knows explicit fallbacks and its token count. Not
        # logged: the original decision already is.
        decision = route(text)
        answered_by = decision.model if model is None else model
        if not check.escalate:
            return answered_by, None
        candidates = [decision.model, *decision.fallbacks]
        return answered_by, stronger_model(config, answered_by, candidates, decision.input_tokens)
    if check.escalate and model is not None:
        # Without the request there is no token count: models compare by the price of
        # the expected output alone.
        return model, next_tier_model(config, model, 0)
    return model, None
