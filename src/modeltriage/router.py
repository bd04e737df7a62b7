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

from modeltriage.core.config import RouterConfig
from modeltriage.core.constraints import Constraints
from modeltriage.core.conversation import conversation_text
from modeltriage.core.costs import estimate_tokens
from modeltriage.core.decision import Decision, Message
from modeltriage.core.encoders import Encoder, SentenceTransformerEncoder
from modeltriage.core.failover import Failover
from modeltriage.core.index import (
    FaissIndex,
    LoadedIndex,
    Manifest,
    NumpyIndex,
    build_in_memory,
    exemplar_rows,
    load_index,
    save_index,
)
from modeltriage.core.inputs import check_text
from modeltriage.core.intents import IntentSet, load_intents
from modeltriage.core.policy import decide
from modeltriage.errors import IndexStateError, InputError
from modeltriage.followup.followups import FollowUps
from modeltriage.followup.model_health import Clock, ModelHealth

if TYPE_CHECKING:
    from modeltriage.followup.answers import Choices, Escalation
    from modeltriage.log.entries import EventEntry, LogEntry
    from modeltriage.log.stores import LogStore
    from modeltriage.log.writer import DecisionLogger

LOG_URL_ENV = "MODELTRIAGE_LOG_URL"
Metadata = Mapping[str, str | int | float | bool | None]


def encoder_for(intent_set: IntentSet) -> SentenceTransformerEncoder:
    """The encoder router.yaml asks for: a fine-tuned model (``encoder.path``, relative to
    the intents directory) or the packaged all-MiniLM-L6-v2."""
    path = intent_set.config.encoder.path
    if path is None:
        return SentenceTransformerEncoder()
    base = Path(".") if intent_set.source is None else intent_set.source
    return SentenceTransformerEncoder(model_path=base / path)


def build_index(intents_dir: Path | str = "intents", encoder: Encoder | None = None) -> Manifest:
    """Embed every exemplar under ``intents_dir`` and save the index beside the intents."""
    intent_set = load_intents(intents_dir)
    encoder = encoder_for(intent_set) if encoder is None else encoder
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
    from modeltriage.log.stores import open_store, resolve_url
    from modeltriage.log.writer import DecisionLogger

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
        health = intent_set.config.health
        shared = logger.store if logger is not None and health.shared else None
        self._health = ModelHealth(clock, shared, refresh_s=health.refresh_s)
        self._clock = clock
        # conversation_id -> (tier position, turns left, expiry time), least recent first
        self._conversations: OrderedDict[str, tuple[int, int, float]] = OrderedDict()
        self._conversation_lock = threading.Lock()
        self._followups = FollowUps(
            intent_set.config, logger, self._health, lambda text: self.route(text, log=False)
        )

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
        encoder = encoder_for(intent_set) if encoder is None else encoder
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

    @property
    def followups(self) -> FollowUps:
        """Feedback, lookups, answer checks, failovers and health: see :mod:`.followup`."""
        return self._followups

    def feedback(
        self, decision_id: str, quality: float, *, source: str = "user", model: str | None = None
    ) -> None:
        """Attach a quality signal (0..1) to a logged decision (:meth:`FollowUps.feedback`)."""
        self._followups.feedback(decision_id, quality, source=source, model=model)

    def decision(self, decision_id: str) -> LogEntry:
        """A logged decision by id (:meth:`FollowUps.decision`)."""
        return self._followups.decision(decision_id)

    def events(self, decision_id: str) -> list[EventEntry]:
        """A logged decision's failovers and answer checks (:meth:`FollowUps.events`)."""
        return self._followups.events(decision_id)

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
        """Check a cheaper model's answer and name where to escalate
        (:meth:`FollowUps.escalate`)."""
        return self._followups.escalate(
            answer,
            model=model,
            text=text,
            decision_id=decision_id,
            confidence=confidence,
            logprobs=logprobs,
            finish_reason=finish_reason,
            second_answer=second_answer,
            choices=choices,
        )

    def mark_unhealthy(self, model: str, cooldown_s: float | None = None) -> float:
        """Skip ``model`` for a cooldown (:meth:`FollowUps.mark_unhealthy`)."""
        return self._followups.mark_unhealthy(model, cooldown_s)

    def unhealthy_models(self) -> dict[str, float]:
        """Models currently marked unhealthy, with their seconds left."""
        return self._health.unhealthy()

    @property
    def failovers(self) -> int:
        """How many failovers (:meth:`failover` / :meth:`next_model` calls) were asked."""
        return self._followups.failovers

    def failover(
        self, chain: Decision | str | Sequence[str], failed: str | Sequence[str]
    ) -> Failover:
        """The next model to try once ``failed`` failed (:meth:`FollowUps.failover`)."""
        return self._followups.failover(chain, failed)

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


def route_all(router: Router, texts: Sequence[str], *, explain: bool = False) -> list[Decision]:
    """Route any number of texts in batches of ``limits.max_batch`` (offline work:
    evaluation, tuning, simulation). Decisions are logged as ``router`` is set up to."""
    size = router.config.limits.max_batch
    return [
        decision
        for start in range(0, len(texts), size)
        for decision in router.route_batch(texts[start : start + size], explain=explain)
    ]
