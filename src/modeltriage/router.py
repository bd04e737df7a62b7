"""``Router``: wires the encoder, the index and the policy together. No logic of its own."""

from __future__ import annotations

import os
import threading
import time
import uuid
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING

from .config import IntentSet, RouterConfig, load_intents
from .decision import Decision, Message
from .encoders import Encoder, SentenceTransformerEncoder
from .errors import IndexStateError, InputError
from .health import Clock, ModelHealth
from .index import (
    FaissIndex,
    LoadedIndex,
    Manifest,
    NumpyIndex,
    build_in_memory,
    exemplar_rows,
    load_index,
    save_index,
)
from .policy import (
    Constraints,
    Failover,
    conversation_text,
    decide,
    estimate_tokens,
    next_model,
)

if TYPE_CHECKING:
    from .decisionlog import DecisionLogger, EventEntry, LogEntry, LogStore
    from .escalation import Choices, Escalation

LOG_URL_ENV = "MODELTRIAGE_LOG_URL"
Metadata = Mapping[str, str | int | float | bool | None]


def check_text(text: object, max_bytes: int) -> str:
    """Reject what cannot be routed, with a message fit for the caller."""
    if not isinstance(text, str):
        raise InputError(f"text must be a string, got {type(text).__name__}")
    try:
        size = len(text.encode("utf-8"))
    except UnicodeEncodeError:
        raise InputError("text is not valid Unicode (it contains lone surrogates)") from None
    if not text.strip():
        raise InputError("text is empty")
    if size > max_bytes:
        raise InputError(
            f"text is {size} bytes, over the limit of {max_bytes} (limits.max_text_bytes)",
            too_large=True,
        )
    return text


def build_index(intents_dir: Path | str = "intents", encoder: Encoder | None = None) -> Manifest:
    """Embed every exemplar under ``intents_dir`` and save the index beside the intents."""
    intent_set = load_intents(intents_dir)
    encoder = SentenceTransformerEncoder() if encoder is None else encoder
    loaded = build_in_memory(
        exemplar_rows(intent_set.intents), encoder, FaissIndex, intent_set.config.scoring
    )
    save_index(loaded, intent_set.index_path)
    return loaded.manifest


def open_logger(intent_set: IntentSet, log: bool | str | LogStore = True) -> DecisionLogger | None:
    """The decision logger the config (or ``log``) asks for, or None when logging is off.

    ``log=True``: ``$MODELTRIAGE_LOG_URL`` if set, else ``log.url`` from router.yaml
    (a relative SQLite path is relative to the intents directory). A string is a URL; a
    store is used as is.
    """
    from .decisionlog import DecisionLogger, open_store, resolve_url

    settings = intent_set.config.log
    base = Path(".") if intent_set.source is None else intent_set.source
    if log is False:
        return None
    if isinstance(log, str) or log is True:
        url = log if isinstance(log, str) else os.environ.get(LOG_URL_ENV) or settings.url
        if url is None:
            return None
        store = open_store(resolve_url(url, base))
    else:
        store = log
    return DecisionLogger(
        store,
        queue_size=settings.queue_size,
        store_text=settings.store_text,
        spool_path=base / ".log-spool.jsonl",
    )


class Router:
    """Decides which model should answer a request. Never calls a model itself.

    With a decision logger, every routed request is recorded off the request path;
    close the router (or use it as a context manager) to flush the log.
    """

    def __init__(
        self,
        intent_set: IntentSet,
        encoder: Encoder,
        index: LoadedIndex,
        logger: DecisionLogger | None = None,
        *,
        clock: Clock = time.monotonic,
    ) -> None:
        self._intent_set = intent_set
        self._intents = {intent.name: intent for intent in intent_set.intents}
        self._encoder = encoder
        self._index = index
        self._logger = logger
        self._health = ModelHealth(clock)
        self._clock = clock
        # conversation_id -> (tier position, turns left, expiry time), least recent first
        self._conversations: OrderedDict[str, tuple[int, int, float]] = OrderedDict()
        self._conversation_lock = threading.Lock()
        self._failovers = 0
        self._failover_lock = threading.Lock()

    @classmethod
    def load(
        cls,
        intents_dir: Path | str = "intents",
        *,
        encoder: Encoder | None = None,
        build_if_needed: bool = False,
        log: bool | str | LogStore = True,
        clock: Clock = time.monotonic,
    ) -> Router:
        """Load intents and their saved index.

        Raises ``IndexMissingError``/``StaleIndexError`` when the index does not match
        the intent files, unless ``build_if_needed`` is set, in which case it rebuilds.
        ``log``: see :func:`open_logger`; ``False`` turns decision logging off.
        """
        intent_set = load_intents(intents_dir)
        encoder = SentenceTransformerEncoder() if encoder is None else encoder
        rows = exemplar_rows(intent_set.intents)
        try:
            index = load_index(
                intent_set.index_path, rows, encoder, Path(intents_dir), intent_set.config.scoring
            )
        except IndexStateError:
            if not build_if_needed:
                raise
            index = build_in_memory(rows, encoder, FaissIndex, intent_set.config.scoring)
            save_index(index, intent_set.index_path)
        return cls(intent_set, encoder, index, open_logger(intent_set, log), clock=clock)

    @classmethod
    def in_memory(
        cls,
        intent_set: IntentSet,
        encoder: Encoder,
        *,
        exact_numpy: bool = False,
        log: bool | str | LogStore = False,
        clock: Clock = time.monotonic,
    ) -> Router:
        """Build the index in memory without touching disk (evaluation, tests).
        Logging is off unless ``log`` asks for it (see :func:`open_logger`)."""
        factory = NumpyIndex if exact_numpy else FaissIndex
        rows = exemplar_rows(intent_set.intents)
        index = build_in_memory(rows, encoder, factory, intent_set.config.scoring)
        return cls(intent_set, encoder, index, open_logger(intent_set, log), clock=clock)

    @property
    def logger(self) -> DecisionLogger | None:
        return self._logger

    def feedback(
        self, decision_id: str, quality: float, *, source: str = "user", model: str | None = None
    ) -> None:
        """Attach a quality signal (0..1) to a logged decision.

        Raises ``UnknownDecisionError`` for an id never logged, ``LogStoreError`` when
        logging is off. Every call adds a row: repeated feedback is kept with its time.
        """
        from .decisionlog import FeedbackEntry, LogStoreError

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
        from .decisionlog import LogStoreError, UnknownDecisionError

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
        from .decisionlog import EventEntry
        from .escalation import Escalation, check_answer, next_tier_model, stronger_model

        settings = self.config.escalation
        for name, value in (("answer", answer), ("second_answer", second_answer)):
            if value is None:
                continue
            try:
                size = len(value.encode("utf-8"))
            except UnicodeEncodeError:
                raise InputError(f"{name} is not valid Unicode (lone surrogates)") from None
            if size > settings.max_answer_bytes:
                raise InputError(
                    f"{name} is over the limit of {settings.max_answer_bytes} bytes "
                    "(escalation.max_answer_bytes)",
                    too_large=True,
                )
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
            decision = self.route(text, log=False)
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

    def unhealthy_models(self) -> dict[str, float]:
        """Models currently marked unhealthy, with their seconds left."""
        return self._health.unhealthy()

    @property
    def failovers(self) -> int:
        """How many failovers (:meth:`failover` / :meth:`next_model` calls) were asked."""
        return self._failovers

    def failover(
        self, chain: Decision | str | Sequence[str], failed: str | Sequence[str]
    ) -> Failover:
        """The model to try once ``failed`` failed: the first model after the last failed
        one in ``chain`` that has not failed and is not marked unhealthy; ``model`` None
        when none is left. ``chain`` is a decision, the id of a logged decision (a plain
        string; needs the decision log), or a model followed by its fallbacks. With a
        decision log, the failover is recorded as an event."""
        from .decisionlog import EventEntry

        decision_id = None
        if isinstance(chain, str):
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
        with self._failover_lock:
            self._failovers += 1
        result = next_model(names, set(failed_names), set(self._health.unhealthy()))
        detail = f"failed: {', '.join(failed_names)}; {result.reason}"
        self._record(EventEntry("failover", failed_names[-1], result.model, detail, decision_id))
        return result

    def next_model(
        self, chain: Decision | str | Sequence[str], failed: str | Sequence[str]
    ) -> str | None:
        """:meth:`failover`'s model alone."""
        return self.failover(chain, failed).model

    def close(self) -> None:
        """Flush and close the decision log, if any. Idempotent."""
        if self._logger is not None:
            self._logger.close()

    def __enter__(self) -> Router:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    @property
    def config(self) -> RouterConfig:
        return self._intent_set.config

    @property
    def intent_set(self) -> IntentSet:
        return self._intent_set

    @property
    def manifest(self) -> Manifest:
        return self._index.manifest

    @property
    def encoder(self) -> Encoder:
        return self._encoder

    def route(
        self,
        text: str,
        *,
        explain: bool = False,
        metadata: Metadata | None = None,
        log: bool = True,
        max_latency_ms: float | None = None,
        max_cost_usd: float | None = None,
        step: str | None = None,
        conversation_id: str | None = None,
    ) -> Decision:
        """Decide which model should answer ``text``; ``metadata`` (tenant, conversation,
        pipeline step...) is stored with the logged decision; ``log=False`` skips the log.

        ``max_latency_ms`` / ``max_cost_usd``: only models within them are eligible
        (reason ``over_budget`` when none is). ``step``: a pipeline step of
        ``router.yaml``'s ``steps``, routed by its tier or intent instead of the exemplars.
        ``conversation_id``: with ``conversation.sticky``, the conversation does not go
        down tiers for ``conversation.sticky_turns`` turns.
        """
        sticky_id = conversation_id if self.config.conversation.sticky else None
        floor = None
        if sticky_id is not None:
            # The lock guards the state only, not the routing: concurrent turns of one
            # conversation are rare, and serialising every sticky request would cost more.
            with self._conversation_lock:
                floor = self._sticky_tier(sticky_id)
        decision = self.route_batch(
            [text],
            explain=explain,
            metadata=metadata,
            log=log,
            max_latency_ms=max_latency_ms,
            max_cost_usd=max_cost_usd,
            step=step,
            _min_tier=floor,
        )[0]
        if sticky_id is not None:
            with self._conversation_lock:
                self._remember_turn(sticky_id, decision.tier)
        return decision

    def _sticky_tier(self, conversation_id: str) -> str | None:
        now = self._clock()
        state = self._conversations.get(conversation_id)
        if state is None:
            return None
        position, left, expires = state
        if expires <= now or left <= 0:
            del self._conversations[conversation_id]
            return None
        return self.config.tiers[position]

    def _remember_turn(self, conversation_id: str, tier: str) -> None:
        settings = self.config.conversation
        position = self.config.tiers.index(tier)
        expires = self._clock() + settings.ttl_s
        state = self._conversations.pop(conversation_id, None)
        if state is None or position > state[0]:
            # A new highest tier: stay there for the next sticky_turns turns.
            self._conversations[conversation_id] = (position, settings.sticky_turns, expires)
        else:
            self._conversations[conversation_id] = (state[0], state[1] - 1, expires)
        while len(self._conversations) > settings.max_conversations:
            self._conversations.popitem(last=False)

    def route_messages(
        self,
        messages: Sequence[Message],
        *,
        explain: bool = False,
        metadata: Metadata | None = None,
        log: bool = True,
        max_latency_ms: float | None = None,
        max_cost_usd: float | None = None,
        step: str | None = None,
        conversation_id: str | None = None,
    ) -> Decision:
        """Route a conversation by its last user turn, with the previous user turn before
        it when the last is shorter than ``conversation.short_turn_words``; otherwise like
        :meth:`route`."""
        text = conversation_text(messages, self.config.conversation.short_turn_words)
        if text is None:
            raise InputError("messages has no user turn with text")
        return self.route(
            text,
            explain=explain,
            metadata=metadata,
            log=log,
            max_latency_ms=max_latency_ms,
            max_cost_usd=max_cost_usd,
            step=step,
            conversation_id=conversation_id,
        )

    def _constraints(
        self,
        max_latency_ms: float | None,
        max_cost_usd: float | None,
        step: str | None,
        min_tier: str | None = None,
    ) -> Constraints:
        for name, value in (("max_latency_ms", max_latency_ms), ("max_cost_usd", max_cost_usd)):
            if value is not None and not (isinstance(value, (int, float)) and value > 0):
                raise InputError(f"{name} must be a number more than 0, got {value!r}")
        if step is not None and step not in self.config.steps:
            known = ", ".join(sorted(self.config.steps)) or "none (router.yaml has no steps)"
            raise InputError(f"unknown step {step!r}; known steps: {known}")
        return Constraints(
            step=step,
            min_tier=min_tier,
            max_latency_ms=None if max_latency_ms is None else float(max_latency_ms),
            max_cost_usd=None if max_cost_usd is None else float(max_cost_usd),
            unhealthy=frozenset(self._health.unhealthy()),
        )

    def route_batch(
        self,
        texts: Sequence[str],
        *,
        explain: bool = False,
        metadata: Metadata | None = None,
        log: bool = True,
        max_latency_ms: float | None = None,
        max_cost_usd: float | None = None,
        step: str | None = None,
        _min_tier: str | None = None,
    ) -> list[Decision]:
        """Route several texts with one encoder call; ``latency_ms`` is the batch's share.
        Budgets and ``step`` apply to every text (see :meth:`route`)."""
        constraints = self._constraints(max_latency_ms, max_cost_usd, step, _min_tier)
        limits = self.config.limits
        if len(texts) > limits.max_batch:
            raise InputError(
                f"batch of {len(texts)} texts is over the limit of {limits.max_batch} "
                "(limits.max_batch)",
                too_large=True,
            )
        for position, text in enumerate(texts):
            try:
                check_text(text, limits.max_text_bytes)
            except InputError as exc:
                where = f"texts[{position}]: " if len(texts) > 1 else ""
                raise InputError(f"{where}{exc}", too_large=exc.too_large) from None
        if not texts:
            return []
        started = time.perf_counter()
        vectors = self._encoder.encode([self.config.scoring.view(t) for t in texts])
        all_neighbours = self._index.neighbours(vectors, self.config.scoring.top_k)
        verdicts = [
            decide(
                neighbours,
                self.config,
                self._intents,
                estimate_tokens(text, self.config.cost.chars_per_token),
                constraints,
            )
            for text, neighbours in zip(texts, all_neighbours, strict=True)
        ]
        latency_ms = (time.perf_counter() - started) * 1000 / len(texts)
        decisions = [
            Decision(
                **verdict.model_dump(),
                id=uuid.uuid4().hex,
                index_version=self._index.manifest.version,
                latency_ms=round(latency_ms, 3),
                neighbours=neighbours if explain else [],
            )
            for verdict, neighbours in zip(verdicts, all_neighbours, strict=True)
        ]
        if self._logger is not None and log:
            if step is not None and (metadata is None or "step" not in metadata):
                # The step is what explains a `step` decision in the log.
                metadata = {**(metadata or {}), "step": step}
            for text, decision in zip(texts, decisions, strict=True):
                self._logger.log(decision, text, metadata=metadata)
        return decisions
