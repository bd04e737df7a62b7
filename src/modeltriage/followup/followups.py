"""What a caller asks about a decision after it was made: feedback, a lookup by id, an
answer check (escalate), a failover, and model health. ``Router`` delegates here, so the
router itself only wires encoder, index, policy and log together.

Nothing here calls a model: it looks at what the caller reports and says what to do next.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from modeltriage.core.config import RouterConfig
from modeltriage.core.decision import Decision
from modeltriage.core.failover import Failover, next_model
from modeltriage.core.inputs import check_answer_size, check_text
from modeltriage.errors import InputError
from modeltriage.followup.model_health import ModelHealth

if TYPE_CHECKING:
    from modeltriage.followup.answers import Choices, Escalation
    from modeltriage.log.entries import EventEntry, LogEntry
    from modeltriage.log.writer import DecisionLogger


class FollowUps:
    """After-decision operations of one router; thread-safe."""

    def __init__(
        self,
        config: RouterConfig,
        logger: DecisionLogger | None,
        health: ModelHealth,
        route: Callable[[str], Decision],
    ) -> None:
        self.config = config
        self._logger = logger
        self._health = health
        # Re-routes a request's text without logging it (its decision is logged already).
        self._route = route
        self._failovers = 0
        self._lock = threading.Lock()

    def feedback(
        self, decision_id: str, quality: float, *, source: str = "user", model: str | None = None
    ) -> None:
        """Attach a quality signal (0..1) to a logged decision.

        Raises ``UnknownDecisionError`` for an id never logged, ``LogStoreError`` when
        logging is off. Every call adds a row: repeated feedback is kept with its time.
        """
        from modeltriage.log.entries import FeedbackEntry, LogStoreError

        if self._logger is None:
            raise LogStoreError("decision logging is off: set log.url in router.yaml")
        self._logger.write_feedback(
            FeedbackEntry(decision_id=decision_id, quality=quality, source=source, model=model)
        )

    def decision(self, decision_id: str) -> LogEntry:
        """A logged decision, by id: its model, fallbacks and cascade plan included.

        Raises ``UnknownDecisionError`` for an id never logged, ``LogStoreError`` when
        logging is off.
        """
        from modeltriage.log.entries import LogStoreError, UnknownDecisionError

        if self._logger is None:
            raise LogStoreError(
                "decision logging is off, so decisions cannot be looked up by id: "
                "set log.url in router.yaml"
            )
        found = self._logger.decision(decision_id)
        if found is None:
            raise UnknownDecisionError(decision_id)
        return found

    def events(self, decision_id: str) -> list[EventEntry]:
        """The failovers and answer checks recorded for a logged decision, oldest first
        (waits for the log's queue first, so an event just recorded is included)."""
        logged = self.decision(decision_id)
        assert self._logger is not None  # decision() refuses when logging is off
        self._logger.flush(timeout=5.0)
        return self._logger.store.events(decision_id=logged.decision_id)

    def _record(self, event: EventEntry) -> None:
        # Off the request path like decisions; a full queue drops and counts it.
        if self._logger is not None:
            self._logger.submit(event)

    def escalate(
        self,
        answer: str,
        *,
        model: str | None = None,
        text: str | None = None,
        decision_id: str | None = None,
        confidence: float | None = None,
        logprobs: Sequence[float] | None = None,
        finish_reason: str | None = None,
        second_answer: str | None = None,
        choices: Choices | None = None,
    ) -> Escalation:
        """Check a cheaper model's answer (``config.escalation``) and, if it should be
        escalated, name the next model up: the logged decision's cascade plan, then its
        fallback chain, when ``decision_id`` is given (needs the decision log); the
        request's own routed chain when ``text`` is given; else the cheapest model of the
        tier above ``model``. With a decision log, the check is recorded as an event."""
        from modeltriage.followup.answers import (
            Escalation,
            check_answer,
            next_tier_model,
            stronger_model,
        )
        from modeltriage.log.entries import EventEntry

        settings = self.config.escalation
        for name, value in (("answer", answer), ("second_answer", second_answer)):
            if value is not None:
                check_answer_size(name, value, settings.max_answer_bytes)
        if text is None and model is None and decision_id is None:
            raise InputError(
                "give `model` (the model that answered), `text` (the request) or the "
                "`decision_id` of a logged decision"
            )
        if text is not None:
            check_text(text, self.config.limits.max_text_bytes)
        if model is not None:
            next_tier_model(self.config, model, 0)  # refuses an unknown model up front
        logged = None
        if decision_id is not None and (
            self._logger is not None or (model is None and text is None)
        ):
            logged = self.decision(decision_id)
        check = check_answer(
            answer,
            settings,
            confidence=confidence,
            logprobs=logprobs,
            finish_reason=finish_reason,
            second_answer=second_answer,
            choices=choices,
            second_answer_required=None if logged is None else logged.second_opinion,
        )
        to_model = None
        answered_by = model
        if logged is not None:
            answered_by = logged.model if model is None else model
            if check.escalate:
                plan = [] if logged.cascade_to is None else [logged.cascade_to]
                candidates = [*plan, logged.model, *logged.fallbacks]
                tokens = 0 if logged.input_tokens is None else logged.input_tokens
                to_model = stronger_model(self.config, answered_by, candidates, tokens)
        elif text is not None and (check.escalate or model is None):
            # The request's own chain knows explicit fallbacks and its token count. Not
            # logged: the original decision already is.
            decision = self._route(text)
            answered_by = decision.model if model is None else model
            if check.escalate:
                candidates = [decision.model, *decision.fallbacks]
                to_model = stronger_model(
                    self.config, answered_by, candidates, decision.input_tokens
                )
        elif check.escalate and model is not None:
            # Without the request there is no token count: models compare by the price of
            # the expected output alone.
            to_model = next_tier_model(self.config, model, 0)
        if answered_by is not None:
            self._record(EventEntry("escalation", answered_by, to_model, check.detail, decision_id))
        return Escalation(
            escalate=check.escalate, to_model=to_model, reasons=check.reasons, detail=check.detail
        )

    def _known_model(self, name: str, what: str) -> str:
        try:
            self.config.model(name)
        except KeyError:
            known = ", ".join(m.name for m in self.config.models)
            raise InputError(
                f"{what}: unknown model {name!r}; router.yaml defines {known}"
            ) from None
        return name

    def mark_unhealthy(self, model: str, cooldown_s: float | None = None) -> float:
        """Skip ``model`` in decisions and failovers for ``cooldown_s`` seconds (default
        ``health.cooldown_s``); returns the seconds left. Marking again restarts it."""
        self._known_model(model, "mark_unhealthy")
        if cooldown_s is None:
            cooldown_s = self.config.health.cooldown_s
        if not cooldown_s > 0:  # also refuses NaN
            raise InputError(f"cooldown_s must be more than 0 seconds, got {cooldown_s!r}")
        return self._health.mark(model, cooldown_s)

    @property
    def failovers(self) -> int:
        """How many failovers (:meth:`failover` calls) were asked."""
        return self._failovers

    def failover(
        self, chain: Decision | str | Sequence[str], failed: str | Sequence[str]
    ) -> Failover:
        """The model to try once ``failed`` failed: the first model after the last failed
        one in ``chain`` that has not failed and is not marked unhealthy; ``model`` None
        when none is left. ``chain`` is a decision, the id of a logged decision (a plain
        string; needs the decision log), or a model followed by its fallbacks. With a
        decision log, the failover is recorded as an event."""
        from modeltriage.log.entries import EventEntry

        decision_id = None
        if isinstance(chain, str):
            if any(m.name == chain for m in self.config.models):
                raise InputError(
                    f"chain: {chain!r} is a model name; give a decision, a decision id or a "
                    f"list of model names such as [{chain!r}]"
                )
            decision_id = chain
            logged = self.decision(chain)
            names = [logged.model, *logged.fallbacks]
        elif isinstance(chain, Decision):
            decision_id = chain.id
            names = [chain.model, *chain.fallbacks]
        else:
            names = list(chain)
        failed_names = [failed] if isinstance(failed, str) else list(failed)
        if not names:
            raise InputError("the model chain is empty")
        if not failed_names:
            raise InputError("name at least one failed model")
        for name in names:
            self._known_model(name, "chain")
        for name in failed_names:
            self._known_model(name, "failed")
        with self._lock:
            self._failovers += 1
        result = next_model(names, set(failed_names), set(self._health.unhealthy()))
        detail = f"failed: {', '.join(failed_names)}; {result.reason}"
        self._record(EventEntry("failover", failed_names[-1], result.model, detail, decision_id))
        return result
