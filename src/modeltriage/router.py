"""``Router``: wires the encoder, the index and the policy together. No logic of its own."""

from __future__ import annotations

import time
import uuid
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType

from modeltriage.core.adapter import explain_adapter
from modeltriage.core.config import RouterConfig
from modeltriage.core.constraints import Constraints
from modeltriage.core.conversation import conversation_text
from modeltriage.core.costs import estimate_tokens
from modeltriage.core.decision import Decision, Message
from modeltriage.core.encoders import Encoder
from modeltriage.core.failover import Failover
from modeltriage.core.index import (
    LoadedIndex,
    Manifest,
    build_from_config,
    exemplar_rows,
)
from modeltriage.core.inputs import (
    check_batch_bytes,
    check_choices,
    check_name,
    check_options,
    check_text,
)
from modeltriage.core.intents import IntentSet, load_intents
from modeltriage.core.oos_score import OosScore
from modeltriage.core.options import NO_OPTIONS, Metadata, RouteOptions
from modeltriage.core.policy import decide
from modeltriage.core.query_cache import CacheStats, QueryCache
from modeltriage.core.vector_index import FaissIndex, NumpyIndex
from modeltriage.errors import InputError
from modeltriage.followup.answers import Answer, Escalation
from modeltriage.followup.conversations import StickyConversations
from modeltriage.followup.escalation import escalate
from modeltriage.followup.failover import Chain, Failovers
from modeltriage.followup.model_health import Clock, ModelHealth
from modeltriage.followup.records import DecisionRecords
from modeltriage.loading import encoder_for, index_for, open_logger
from modeltriage.log.entries import EventEntry, LogEntry
from modeltriage.log.store import LogStore
from modeltriage.log.writer import DecisionLogger


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
        # Requests (not exemplars) go through the LRU of recent texts.
        self._queries = QueryCache(encoder, intent_set.config.serving.query_cache_size)
        self._index = index
        self._records = DecisionRecords(logger)
        config = intent_set.config
        shared = logger.store if logger is not None and config.health.shared else None
        self._health = ModelHealth(clock, shared, refresh_s=config.health.refresh_s)
        self._failovers = Failovers(config, self._records, self._health)
        self._conversations = StickyConversations(config, clock)

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
        encoder = encoder_for(intent_set, export=build_if_needed) if encoder is None else encoder
        index = index_for(intent_set, encoder, build_if_needed=build_if_needed)
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
        index = build_from_config(rows, encoder, factory, intent_set.config)
        return cls(intent_set, encoder, index, open_logger(intent_set, log), clock=clock)

    # --- what the router is made of --------------------------------------------------

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

    def out_of_scope_scores(self, texts: Sequence[str]) -> list[OosScore] | None:
        """Each text's combined out-of-scope score as routing computes it, or None when
        the index's floor is on the top similarity: for offline baselines that re-decide
        from a decision's neighbours (the score depends only on the text's vector and its
        top similarity)."""
        if self._index.gaussians is None:
            return None
        vectors = self._queries.encode([self.config.scoring.view(t) for t in texts])
        return self._index.out_of_scope_scores(vectors, self._index.neighbours(vectors, 1))

    @property
    def query_cache(self) -> CacheStats:
        """Size, capacity, hits and misses of the cache of recent request texts."""
        return self._queries.stats()

    @property
    def logger(self) -> DecisionLogger | None:
        """The decision log's writer (its counters and store), or None when off."""
        return self._records.logger

    # --- routing ---------------------------------------------------------------------

    def route(self, text: str, options: RouteOptions = NO_OPTIONS, *, log: bool = True) -> Decision:
        """Decide which model should answer ``text``.

        ``options`` (:class:`RouteOptions`): budgets (only models within them are
        eligible; reason ``over_budget`` when none is), a pipeline ``step`` of
        router.yaml's ``steps`` (routed by its tier or intent instead of the exemplars),
        a ``conversation_id`` (with ``conversation.sticky``, the conversation does not go
        down tiers for ``conversation.sticky_turns`` turns), ``metadata`` stored with the
        logged decision, and ``explain`` (the nearest exemplars). ``log=False`` skips
        the decision log.
        """
        sticky = options.conversation_id if self.config.conversation.sticky else None
        min_tier = None if sticky is None else self._conversations.min_tier(sticky)
        decision = self._route([text], options, log=log, min_tier=min_tier)[0]
        if sticky is not None:
            self._conversations.remember(sticky, decision.tier)
        return decision

    def route_messages(
        self, messages: Sequence[Message], options: RouteOptions = NO_OPTIONS, *, log: bool = True
    ) -> Decision:
        """Route a conversation by its last user turn, with the previous user turn before
        it when the last is shorter than ``conversation.short_turn_words``; otherwise like
        :meth:`route`."""
        return self.route(self.messages_text(messages), options, log=log)

    def messages_text(self, messages: Sequence[Message]) -> str:
        """The text :meth:`route_messages` routes a conversation by."""
        text = conversation_text(messages, self.config.conversation.short_turn_words)
        if text is None:
            raise InputError("messages has no user turn with text")
        return text

    def route_batch(
        self, texts: Sequence[str], options: RouteOptions = NO_OPTIONS, *, log: bool = True
    ) -> list[Decision]:
        """Route several texts with one encoder call; ``latency_ms`` is the batch's share.
        ``options`` apply to every text (see :meth:`route`), but a conversation is routed
        one turn at a time: a ``conversation_id`` is refused here."""
        self.check_batch(texts, options)
        return self._route(texts, options, log=log, min_tier=None)

    def check_batch(self, texts: Sequence[str], options: RouteOptions = NO_OPTIONS) -> None:
        """Raise the InputError :meth:`route_batch` would raise for these arguments."""
        if options.conversation_id is not None:
            raise InputError("conversation_id: route a conversation's turns one at a time")
        self._constraints(options, None)
        self._check_texts(texts)

    def route_many(
        self, requests: Sequence[tuple[str, RouteOptions]], *, log: bool = True
    ) -> list[Decision | InputError]:
        """Route independent requests, each with its own options, with one encoder call
        and one index search (the service's micro-batches). Each request is decided as
        :meth:`route` would decide it alone; one the router refuses gets its InputError
        in its place, and the others are still routed."""
        results: list[Decision | InputError | None] = []
        valid: list[tuple[int, str, RouteOptions, Constraints, str | None]] = []
        for position, (text, options) in enumerate(requests):
            sticky = options.conversation_id if self.config.conversation.sticky else None
            try:
                self._check_texts([text])
                min_tier = None if sticky is None else self._conversations.min_tier(sticky)
                constraints = self._constraints(options, min_tier)
            except InputError as exc:
                results.append(exc)
                continue
            results.append(None)  # decided below, with the others in one call
            valid.append((position, text, options, constraints, sticky))
        decisions = self._decide(
            [v[1] for v in valid], [v[2] for v in valid], [v[3] for v in valid], log=log
        )
        for (position, _, _, _, sticky), decision in zip(valid, decisions, strict=True):
            results[position] = decision
            if sticky is not None:
                self._conversations.remember(sticky, decision.tier)
        return [r for r in results if r is not None]

    def _route(
        self, texts: Sequence[str], options: RouteOptions, *, log: bool, min_tier: str | None
    ) -> list[Decision]:
        constraints = self._constraints(options, min_tier)
        self._check_texts(texts)
        n = len(texts)
        return self._decide(texts, [options] * n, [constraints] * n, log=log)

    def _decide(
        self,
        texts: Sequence[str],
        options: Sequence[RouteOptions],
        constraints: Sequence[Constraints],
        *,
        log: bool,
    ) -> list[Decision]:
        """Checked texts, each with its options and constraints, to decisions: one
        encoder call, one index search, the policy per text."""
        if not texts:
            return []
        started = time.perf_counter()
        config = self.config
        vectors = self._queries.encode([config.scoring.view(t) for t in texts])
        all_neighbours = self._index.neighbours(vectors, config.scoring.top_k)
        oos_floor = self._index.manifest.oos_floor
        scores = self._index.out_of_scope_scores(vectors, all_neighbours)
        oos_scores: Sequence[OosScore | None] = [None] * len(texts) if scores is None else scores
        verdicts = [
            decide(
                neighbours,
                config,
                self._intents,
                estimate_tokens(text, config.cost.chars_per_token),
                constraint,
                oos_floor,
                oos_score,
            )
            for text, neighbours, constraint, oos_score in zip(
                texts, all_neighbours, constraints, oos_scores, strict=True
            )
        ]
        latency_ms = (time.perf_counter() - started) * 1000 / len(texts)
        if self._index.adapter is not None and any(o.explain for o in options):
            found = self._index.raw_nearest_intents(vectors)
            raw: list[str | None] = [None] * len(texts) if found is None else list(found)
            verdicts = [
                verdict.model_copy(
                    update={"explanation": explain_adapter(verdict.explanation, n, r)}
                )
                if option.explain
                else verdict
                for verdict, n, r, option in zip(
                    verdicts, all_neighbours, raw, options, strict=True
                )
            ]
        decisions = [
            Decision(
                **verdict.model_dump(),
                id=uuid.uuid4().hex,
                index_version=self._index.manifest.version,
                latency_ms=round(latency_ms, 3),
                neighbours=neighbours if option.explain else [],
            )
            for verdict, neighbours, option in zip(verdicts, all_neighbours, options, strict=True)
        ]
        logger = self._records.logger
        if logger is not None and log:
            logged = [
                (decision, text, _log_metadata(option))
                for text, decision, option in zip(texts, decisions, options, strict=True)
            ]
            logger.log_all(logged)
        return decisions

    def _constraints(self, options: RouteOptions, min_tier: str | None) -> Constraints:
        check_options(options, self.config.limits)
        step = options.step
        if step is not None and step not in self.config.steps:
            known = ", ".join(sorted(self.config.steps)) or "none (router.yaml has no steps)"
            raise InputError(f"unknown step {step!r}; known steps: {known}")
        return Constraints(
            step=step,
            min_tier=min_tier,
            max_latency_ms=None
            if options.max_latency_ms is None
            else float(options.max_latency_ms),
            max_cost_usd=None if options.max_cost_usd is None else float(options.max_cost_usd),
            unhealthy=frozenset(self._health.unhealthy()),
        )

    def _check_texts(self, texts: Sequence[str]) -> None:
        limits = self.config.limits
        if len(texts) > limits.max_batch:
            raise InputError(
                f"batch of {len(texts)} texts is over the limit of {limits.max_batch} "
                "(limits.max_batch)",
                too_large=True,
            )
        check_batch_bytes(texts, limits.max_batch_bytes)
        for position, text in enumerate(texts):
            try:
                check_text(text, limits.max_text_bytes)
            except InputError as exc:
                where = f"texts[{position}]: " if len(texts) > 1 else ""
                raise InputError(f"{where}{exc}", too_large=exc.too_large) from None

    # --- after a decision ------------------------------------------------------------

    def feedback(
        self, decision_id: str, quality: float, *, source: str = "user", model: str | None = None
    ) -> None:
        """Attach a quality signal (0..1) to a logged decision; raises
        ``UnknownDecisionError`` for an id never logged, ``LogStoreError`` when logging is
        off. Every call adds a row: repeated feedback is kept with its time."""
        check_name(model, self.config.limits, "model")
        self._records.feedback(decision_id, quality, source=source, model=model)

    def decision(self, decision_id: str) -> LogEntry:
        """A logged decision by id, its model, fallbacks and cascade plan included."""
        return self._records.decision(decision_id)

    def events(self, decision_id: str) -> list[EventEntry]:
        """A logged decision's failovers and answer checks, oldest first."""
        return self._records.events(decision_id)

    def escalate(
        self,
        answer: str | Answer,
        *,
        model: str | None = None,
        text: str | None = None,
        decision_id: str | None = None,
    ) -> Escalation:
        """Check a cheaper model's answer and name where to escalate: see
        :func:`modeltriage.followup.escalation.escalate`. ``answer`` is the answer's text,
        or an :class:`Answer` with what else the caller knows (self-rated confidence,
        log-probabilities, finish reason, a second answer, the choices)."""
        checked = Answer(answer=answer) if isinstance(answer, str) else answer
        check_choices(checked.choices, self.config.limits)
        check_name(model, self.config.limits, "model")
        return escalate(
            self.config,
            self._records,
            lambda request: self.route(request, log=False),
            checked,
            model=model,
            text=text,
            decision_id=decision_id,
        )

    def failover(self, chain: Chain, failed: str | Sequence[str]) -> Failover:
        """The next model to try once ``failed`` failed (``model`` None when none is
        left), with the reason: see :meth:`Failovers.failover`."""
        return self._failovers.failover(chain, failed)

    @property
    def failovers(self) -> int:
        """How many failovers were asked since the router started."""
        return self._failovers.count

    def mark_unhealthy(self, model: str, cooldown_s: float | None = None) -> float:
        """Skip ``model`` for ``cooldown_s`` seconds (default ``health.cooldown_s``);
        returns the seconds left."""
        return self._failovers.mark_unhealthy(model, cooldown_s)

    def clear_unhealthy(self, model: str) -> bool:
        """Clear ``model``'s unhealthy mark (and in a shared log); False when it had none."""
        return self._failovers.clear_unhealthy(model)

    def unhealthy_models(self) -> dict[str, float]:
        """Models currently marked unhealthy, with their seconds left."""
        return self._health.unhealthy()

    def close(self) -> None:
        """Flush and close the decision log, if any. Idempotent."""
        if self._records.logger is not None:
            self._records.logger.close()

    def __enter__(self) -> Router:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


def _log_metadata(options: RouteOptions) -> Metadata | None:
    """The metadata logged with a decision: the caller's, plus the step, which is what
    explains a `step` decision in the log."""
    metadata = options.metadata
    if options.step is not None and (metadata is None or "step" not in metadata):
        metadata = {**(metadata or {}), "step": options.step}
    return metadata


def route_all(
    router: Router, texts: Sequence[str], *, explain: bool = False, log: bool = True
) -> list[Decision]:
    """Route any number of texts in batches of ``limits.max_batch`` (offline work:
    evaluation, tuning, simulation). Decisions are logged as ``router`` is set up to,
    unless ``log`` is false."""
    size = router.config.limits.max_batch
    return [
        decision
        for start in range(0, len(texts), size)
        for decision in router.route_batch(
            texts[start : start + size], RouteOptions(explain=explain), log=log
        )
    ]
