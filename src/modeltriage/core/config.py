"""The router config's schema (``router.yaml``): the models with their prices, the tier
order, and every threshold the policy uses. The thresholds live here and nowhere else.
Loading it from YAML, with file:line errors, is :mod:`modeltriage.core.intents`' job.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Annotated, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    model_validator,
)

from modeltriage.core.ann import IndexSettings
from modeltriage.core.escalation_settings import EscalationSettings
from modeltriage.core.lint_settings import LintSettings
from modeltriage.core.options import (
    CHOICES_CEILING,
    METADATA_KEY_CHARS_CEILING,
    METADATA_KEYS_CEILING,
    METADATA_VALUE_BYTES_CEILING,
    NAME_CHARS_CEILING,
)

Difficulty = Literal["easy", "moderate", "hard"]
DIFFICULTIES: tuple[Difficulty, ...] = ("easy", "moderate", "hard")
Aggregation = Literal["max", "mean_top2", "vote"]

# A margin (best minus runner-up intent score) is in the unit of the scores: under `vote`
# a share of the vote, under `max` and `mean_top2` a difference of two cosine
# similarities. One router.yaml key, `margin`, serves both (the shipped file and `tune
# --write` use it); each unit has its own name and range, checked on load.
MarginUnit = Literal["vote_share", "cosine_gap"]
OutOfScopeScore = Literal["similarity", "similarity+mahalanobis"]
MARGIN_UNITS: dict[MarginUnit, tuple[str, float, float]] = {
    "vote_share": ("a share of the vote", 0.0, 1.0),
    "cosine_gap": ("a gap between two cosine similarities", 0.0, 2.0),
}

ROUTER_CONFIG_FILE = "router.yaml"

Name = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200)]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ModelSpec(Strict):
    name: Name
    tier: Name
    provider: str | None = None
    input_usd_per_mtok: float = Field(ge=0)
    output_usd_per_mtok: float = Field(ge=0)
    typical_latency_ms: float | None = Field(default=None, gt=0)
    specialised: bool = Field(
        default=False,
        description="only used by intents that name it, never as a tier's default model",
    )


class Thresholds(Strict):
    """Cascade thresholds. ``None`` disables a check; it is never read by truthiness."""

    margin: float | None = Field(
        default=0.2,
        ge=0,
        description="straight to the flagship when best - runner-up intent score < margin; "
        "in the aggregation's margin unit (Scoring.margin_unit): a share of the vote with "
        "vote (the default, 0..1), a cosine gap with max or mean_top2 (0..2)",
    )
    min_similarity: float | None = Field(
        default=0.40, ge=-1, le=1, description="below this top similarity nothing matches"
    )
    difficulty_confidence: float | None = Field(
        default=None,
        gt=0,
        le=1,
        description="route to the easiest difficulty whose cumulative vote share (easy, "
        "then easy+moderate) reaches this; null: the difficulty with the most votes",
    )
    cascade_margin: float | None = Field(
        default=None,
        ge=0,
        description="in the same unit as `margin`: "
        "a match whose margin is at least `margin` but below this is only "
        "moderately sure: the routed model answers first and the decision carries a "
        "cascade plan naming the flagship to escalate to when the answer fails the "
        "check (POST /escalate); null: no cascade plans on margin",
    )
    cascade_harder_share: float | None = Field(
        default=None,
        gt=0,
        le=1,
        description="plan a cascade when at least this share of the best intent's "
        "neighbours voted a harder difficulty than the routed one: the routed model "
        "answers first, the harder difficulty's tier is the escalation; null: off",
    )

    @model_validator(mode="after")
    def _cascade_above_margin(self) -> Thresholds:
        margin, cascade = self.margin, self.cascade_margin
        if margin is not None and cascade is not None and cascade <= margin:
            # Since the default margin is a share of the vote, a cosine-gap cascade_margin
            # set alone can fall under it: say where the margin came from.
            default = "" if "margin" in self.model_fields_set else ", the default"
            raise ValueError(
                f"cascade_margin ({cascade}) must be above margin ({margin}{default}): "
                "below margin goes straight to the flagship, from margin to cascade_margin "
                "tries the routed model first"
            )
        return self


class Scoring(Strict):
    top_k: int = Field(default=20, ge=1, le=1000, description="nearest exemplars looked up")
    aggregation: Aggregation = Field(
        default="vote",
        description="how an intent's neighbours become its score: vote (similarity-"
        "weighted share of the vote), max (nearest exemplar's cosine), mean_top2",
    )
    long_text: Literal["head", "tail"] = Field(
        default="head",
        description="which part of a long text is embedded: head (the encoder truncates "
        "after its window) or tail (the last window_chars characters, where a few-shot "
        "prompt keeps its real question)",
    )
    window_chars: int = Field(default=1000, ge=50, description="tail window, in characters")

    def view(self, text: str) -> str:
        """The part of ``text`` that is embedded, for exemplars and requests alike."""
        if self.long_text == "tail" and len(text) > self.window_chars:
            return text[-self.window_chars :]
        return text

    @property
    def margin_unit(self) -> MarginUnit:
        """What an intent score, hence a margin, is measured in under this aggregation."""
        return "vote_share" if self.aggregation == "vote" else "cosine_gap"

    @property
    def view_key(self) -> str:
        """Recorded in the index manifest: another view means other vectors."""
        return "head" if self.long_text == "head" else f"tail:{self.window_chars}"


class NoMatch(Strict):
    """Where a request that matches no intent goes: a tier's cheapest model, or a model."""

    tier: Name | None = None
    model: Name | None = None

    @model_validator(mode="after")
    def _at_most_one(self) -> NoMatch:
        if self.tier is not None and self.model is not None:
            raise ValueError("set either tier or model, not both")
        return self


class CostEstimate(Strict):
    chars_per_token: float = Field(default=4.0, gt=0)
    expected_output_tokens: int = Field(default=300, ge=0)


class Limits(Strict):
    """What one request may hold; the service also caps its body and its reading time."""

    max_text_bytes: int = Field(default=32_768, ge=1, description="UTF-8 bytes of one text")
    max_batch: int = Field(default=256, ge=1, description="texts in one batch")
    max_batch_bytes: int = Field(
        default=1_048_576, ge=1, description="UTF-8 bytes of all the texts of one batch"
    )
    max_body_bytes: int = Field(
        default=8_388_608,
        ge=1024,
        description="bytes of one HTTP request body, counted as it arrives (413 beyond)",
    )
    body_timeout_s: float = Field(
        default=30.0,
        gt=0,
        le=3600,
        description="seconds a client has to send a whole request body (408 beyond)",
    )
    max_metadata_keys: int = Field(
        default=32, ge=0, le=METADATA_KEYS_CEILING, description="keys of a request's metadata"
    )
    max_metadata_key_chars: int = Field(
        default=64, ge=1, le=METADATA_KEY_CHARS_CEILING, description="characters of a metadata key"
    )
    max_metadata_value_bytes: int = Field(
        default=256,
        ge=1,
        le=METADATA_VALUE_BYTES_CEILING,
        description="UTF-8 bytes of a metadata string value",
    )
    max_choices: int = Field(
        default=26,
        ge=1,
        le=CHOICES_CEILING,
        description="multiple-choice options of an answer check (/escalate `choices`): "
        "matching costs options x answer length",
    )
    max_name_chars: int = Field(
        default=200,
        ge=1,
        le=NAME_CHARS_CEILING,
        description="characters of a name a request gives: a model, a step, a conversation id",
    )


class LogSettings(Strict):
    """Where decisions are logged. ``url`` null turns logging off."""

    url: str | None = Field(
        default=None,
        description="SQLite file path (relative to the intents directory) or postgresql:// URL; "
        "$MODELTRIAGE_LOG_URL overrides it",
    )
    store_text: bool = Field(default=True, description="false keeps only a hash of each text")
    queue_size: int = Field(default=10_000, ge=1)
    durability: Literal["ack", "async"] = Field(
        default="ack",
        description="ack: a request is answered only once its decision is committed (a hard "
        "kill loses none); async: committed in the background, a hard kill may lose the last "
        "flush_interval_s of decisions",
    )
    flush_interval_s: float = Field(
        default=0.2,
        gt=0,
        le=60,
        allow_inf_nan=False,
        description="async: how long the writer waits for a batch to fill, the loss window",
    )
    ack_timeout_s: float = Field(
        default=10.0,
        gt=0,
        le=600,
        allow_inf_nan=False,
        description="ack: a request whose decision is not committed by then gets a 503",
    )


EncoderBackend = Literal["torch", "onnx", "onnx-int8", "static"]


class EncoderSettings(Strict):
    """Which weights embed requests and exemplars, and what runs them."""

    # onnx-int8: smoothed, per-token int8 keeps cosine >= 0.99 to torch on every text
    # (core/onnx_quantise.py) and ran 1.4x faster than fp32 ONNX here, which is ~3x
    # faster than torch; both ONNX backends serve without torch (docs/benchmarks.md).
    backend: EncoderBackend = Field(
        default="onnx-int8",
        description="onnx-int8 (MiniLM exported to ONNX and quantised to int8, run by "
        "onnxruntime without torch), onnx (the same in fp32), torch "
        "(sentence-transformers, the reference) or static (MiniLM distilled into one "
        "vector per token: far faster, less accurate; docs/benchmarks.md)",
    )
    threads: int | None = Field(
        default=None,
        ge=1,
        le=256,
        description="onnxruntime intra-op threads of the onnx backends (static runs none); "
        "null: one for requests, and one per available core for a build's bulk embedding",
    )

    path: str | None = Field(
        default=None,
        description="a fine-tuned model directory (`modeltriage finetune`), relative to the "
        "intents directory; null: the packaged all-MiniLM-L6-v2",
    )


class ServingSettings(Strict):
    """How the service gathers concurrent requests into one encoder call, and how many
    recent request texts it remembers. Measured in docs/benchmarks.md."""

    # 0: a request is routed as soon as the worker is free, and those arriving meanwhile
    # form the next batch. Measured against 1 ms on the shipped intents: more requests per
    # second at 1, 8 and 32 clients, and 1 ms less at one (docs/benchmarks.md).
    batch_wait_ms: float = Field(
        default=0.0,
        ge=0,
        le=1000,
        description="how long the first request of a micro-batch waits for others, in ms "
        "(0: none; requests arriving while a batch is routed form the next one)",
    )
    max_batch: int = Field(
        default=64, ge=1, le=4096, description="texts per micro-batch (encoder call)"
    )
    queue_size: int = Field(
        default=1024,
        ge=1,
        le=1_000_000,
        description="texts waiting for a micro-batch; beyond it /route answers 503",
    )
    query_cache_size: int = Field(
        default=4096,
        ge=0,
        le=10_000_000,
        description="recent request texts whose vectors are kept (LRU); 0 turns it off",
    )
    # FAISS splits a micro-batch's search over OpenMP threads, one per core by default;
    # in the service those threads spin between batches against the event loop and the
    # encoder. One thread served 30-50% more requests a second at 32 clients on the
    # 2-core machine (docs/benchmarks.md, "FAISS's threads in the service").
    search_threads: int | None = Field(
        default=1,
        ge=1,
        le=256,
        description="OpenMP threads of a micro-batch's FAISS search in the service; null: "
        "FAISS's default (one per core)",
    )


# Weight decays the build's cross-validation chooses from when adapter.weight_decay is
# null: a map held near the identity to a freer one.
ADAPTER_WEIGHT_DECAYS: tuple[float, ...] = (0.001, 0.0001)


class AdapterSettings(Strict):
    """The linear map of the embedding space learned from the exemplars at build time
    (:mod:`modeltriage.core.adapter`). Part of the index: changing any of these makes the
    index stale, and a rebuild retrains it deterministically."""

    # On by default: +5 points in-scope on CLINC150 test and fewer cascades on the shipped
    # intents, for a few seconds of build (docs/benchmarks.md, "The adapter on by default").
    enabled: bool = Field(
        default=True,
        description="learn the map at build time and apply it to exemplars and queries; "
        "false: raw encoder cosines",
    )
    weight_decay: float | None = Field(
        default=None,
        ge=0,
        le=100,
        description="pull of the map back to the identity; null: chosen by "
        "cross-validation over the exemplars from 0.001 and 0.0001",
    )
    epochs: int = Field(default=3, ge=1, le=1000, description="passes over the exemplars")
    min_steps: int = Field(
        default=50, ge=0, le=100_000, description="Adam steps at least, however few exemplars"
    )
    batch_size: int = Field(default=1024, ge=1, le=1_000_000)
    learning_rate: float = Field(default=0.01, gt=0, le=1)
    folds: int = Field(default=3, ge=2, le=10, description="cross-validation folds")
    cv_max_exemplars: int = Field(
        default=1500,
        ge=10,
        description="cross-validation runs on a stratified sample of at most this many "
        "exemplars (the final fit uses all of them)",
    )
    seed: int = Field(
        default=0, ge=0, le=2**32 - 1, description="picks the folds and the mini-batches"
    )

    @property
    def weight_decays(self) -> tuple[float, ...]:
        return ADAPTER_WEIGHT_DECAYS if self.weight_decay is None else (self.weight_decay,)

    @property
    def key(self) -> str:
        """Recorded in the index manifest: other settings mean another map."""
        if not self.enabled:
            return "off"
        decay = "cv" if self.weight_decay is None else f"{self.weight_decay:g}"
        return (
            f"softmax:decay={decay},epochs={self.epochs},min_steps={self.min_steps},"
            f"batch={self.batch_size},"
            f"lr={self.learning_rate:g},folds={self.folds},cv_max={self.cv_max_exemplars},"
            f"seed={self.seed}"
        )


class OutOfScopeSettings(Strict):
    """The out-of-scope floor calibrated from the exemplars at build time
    (:mod:`modeltriage.core.out_of_scope`). Part of the index: changing any of these makes
    the index stale. A request whose score (``score``: the top similarity, or that plus
    a relative Mahalanobis distance, :mod:`modeltriage.core.oos_score`) is under the
    floor is ``no_match``, as under ``thresholds.min_similarity`` (either turns it away)."""

    calibrate: bool = Field(
        default=True,
        description="hold out a share of each intent's exemplars at build time and set the "
        "floor where it turns away reject_share of them; false: min_similarity alone",
    )
    # 0.03: the best mean overall accuracy over three splits of CLINC150 train alone (a
    # router on 80% of each intent, all or 10 per intent, routing the other 20% and
    # train's out-of-scope rows; and with a quarter of the intents unseen);
    # docs/benchmarks.md, "Out-of-scope detection".
    reject_share: float = Field(
        default=0.03,
        ge=0,
        le=0.5,
        allow_inf_nan=False,
        description="share of held-out exemplars (standing for in-scope requests) the "
        "floor may turn away: higher catches more out-of-scope requests and loses more "
        "in-scope ones",
    )
    hold_out: float = Field(
        default=0.1,
        gt=0,
        le=0.5,
        allow_inf_nan=False,
        description="share of each intent's exemplars held out to calibrate on (at least "
        "one, never an intent's last)",
    )
    seed: int = Field(default=0, ge=0, le=2**32 - 1, description="picks the held-out exemplars")
    # similarity+mahalanobis: the best mean overall accuracy at 0.03 over the same three
    # train-only splits (89.8% against 89.0% for similarity), and more in-scope accuracy
    # at the same out-of-scope recall on each; docs/benchmarks.md, "The out-of-scope floor
    # on top similarity + Mahalanobis distance".
    score: OutOfScopeScore = Field(
        default="similarity+mahalanobis",
        description="what the floor is put on: 'similarity', the top cosine similarity; "
        "'similarity+mahalanobis', the sum of that similarity and the relative Mahalanobis "
        "distance of the raw request vector to the intents (class means, one shared "
        "covariance, less a background Gaussian's), each standardised on the held-out "
        "exemplars",
    )

    @property
    def key(self) -> str:
        """Recorded in the index manifest: other settings mean another floor."""
        if not self.calibrate:
            return "off"
        key = f"held-out:share={self.reject_share:g},hold_out={self.hold_out:g},seed={self.seed}"
        # The similarity floor keeps the key it had before the score existed: its
        # indexes stay current.
        return key if self.score == "similarity" else f"{key},score={self.score}"


# A year: far beyond any outage a cooldown stands for, and far below the clock's range
# (a mark ends at a datetime, which stops at the year 9999).
MAX_COOLDOWN_S = 365 * 24 * 3600.0


class HealthSettings(Strict):
    """How long a model marked unhealthy (it errored or timed out) is skipped."""

    cooldown_s: float = Field(
        default=60.0, gt=0, description="default cooldown of Router.mark_unhealthy, in seconds"
    )
    max_cooldown_s: float = Field(
        default=3600.0,
        gt=0,
        le=MAX_COOLDOWN_S,
        description="the longest cooldown a call may ask for, in seconds: a mark cannot "
        "outlive a misconfigured or hostile caller for long",
    )
    shared: bool = Field(
        default=True,
        description="with a decision log, write marks to it and read other routers' marks "
        "(replicas sharing a PostgreSQL log skip a model any of them marked)",
    )
    refresh_s: float = Field(
        default=2.0, ge=0, description="how often shared marks are read from the log, seconds"
    )

    @model_validator(mode="after")
    def _default_within_the_limit(self) -> HealthSettings:
        if self.cooldown_s > self.max_cooldown_s:
            raise ValueError(
                f"cooldown_s ({self.cooldown_s:g}) is over max_cooldown_s ({self.max_cooldown_s:g})"
            )
        return self


class ConversationSettings(Strict):
    """How a multi-turn conversation becomes the text that is routed."""

    short_turn_words: int = Field(
        default=4,
        ge=1,
        description="a last user turn with fewer words than this ('and in red?') is routed "
        "with the previous user turn before it",
    )
    sticky: bool = Field(
        default=False,
        description="with a conversation_id, do not go down tiers within a conversation",
    )
    sticky_turns: int = Field(
        default=3, ge=1, description="turns a conversation stays at (or above) its tier"
    )
    max_conversations: int = Field(
        default=10_000, ge=1, description="conversations remembered; the least recent go first"
    )
    ttl_s: float = Field(
        default=3600.0, gt=0, description="a conversation idle this long is forgotten"
    )


class Step(Strict):
    """Where a pipeline step goes: a tier's cheapest model, or an intent's route."""

    tier: Name | None = None
    intent: Name | None = None

    @model_validator(mode="after")
    def _exactly_one(self) -> Step:
        if (self.tier is None) == (self.intent is None):
            raise ValueError("set exactly one of tier or intent")
        return self


class RouterConfig(Strict):
    tiers: list[Name] = Field(min_length=1, description="cheapest first, flagship last")
    difficulty_tiers: dict[Difficulty, Name] | None = None
    models: list[ModelSpec] = Field(min_length=1)
    thresholds: Thresholds = Thresholds()
    scoring: Scoring = Scoring()
    no_match: NoMatch = NoMatch()
    fallbacks: dict[Name, list[Name]] = Field(
        default_factory=dict, description="explicit fallback chain per model"
    )
    cost: CostEstimate = CostEstimate()
    limits: Limits = Limits()
    log: LogSettings = LogSettings()
    escalation: EscalationSettings = EscalationSettings()
    lint: LintSettings = LintSettings()
    encoder: EncoderSettings = EncoderSettings()
    serving: ServingSettings = ServingSettings()
    adapter: AdapterSettings = AdapterSettings()
    out_of_scope: OutOfScopeSettings = OutOfScopeSettings()
    health: HealthSettings = HealthSettings()
    conversation: ConversationSettings = ConversationSettings()
    steps: dict[Name, Step] = Field(
        default_factory=dict,
        description="pipeline steps a request may name, each routed to a tier or an intent",
    )
    index_dir: str = ".index"
    index: IndexSettings = IndexSettings()

    @property
    def flagship_tier(self) -> str:
        return self.tiers[-1]

    def tier_for(self, difficulty: Difficulty) -> str:
        if self.difficulty_tiers is not None and difficulty in self.difficulty_tiers:
            return self.difficulty_tiers[difficulty]
        # Spread the three difficulties over however many tiers there are; a difficulty
        # halfway between two tiers takes the stronger one.
        steps = (len(self.tiers) - 1) / (len(DIFFICULTIES) - 1)
        return self.tiers[math.floor(DIFFICULTIES.index(difficulty) * steps + 0.5)]

    def model(self, name: str) -> ModelSpec:
        for spec in self.models:
            if spec.name == name:
                return spec
        raise KeyError(name)

    def problems(self) -> list[tuple[tuple[str | int, ...], str]]:
        """Cross-reference errors, each with the config location it concerns."""
        found: list[tuple[tuple[str | int, ...], str]] = []
        tiers = set(self.tiers)
        if len(tiers) != len(self.tiers):
            found.append((("tiers",), "tier names must be unique"))
        names = [m.name for m in self.models]
        seen: set[str] = set()
        for i, spec in enumerate(self.models):
            if spec.name in seen:
                found.append((("models", i, "name"), f"duplicate model name {spec.name!r}"))
            seen.add(spec.name)
            if spec.tier not in tiers:
                found.append(
                    (("models", i, "tier"), f"unknown tier {spec.tier!r}; tiers are {self.tiers}")
                )
        for tier in self.tiers:
            if not any(m.tier == tier and not m.specialised for m in self.models):
                found.append((("tiers",), f"tier {tier!r} has no general (non-specialised) model"))
        for difficulty, tier in (self.difficulty_tiers or {}).items():
            if tier not in tiers:
                found.append(
                    (("difficulty_tiers", difficulty), f"unknown tier {tier!r} for {difficulty}")
                )
        if self.no_match.tier is not None and self.no_match.tier not in tiers:
            found.append((("no_match", "tier"), f"unknown tier {self.no_match.tier!r}"))
        if self.no_match.model is not None and self.no_match.model not in names:
            found.append((("no_match", "model"), f"unknown model {self.no_match.model!r}"))
        for model, chain in self.fallbacks.items():
            if model not in names:
                found.append((("fallbacks", model), f"unknown model {model!r}"))
            for j, fallback in enumerate(chain):
                if fallback not in names:
                    found.append((("fallbacks", model, j), f"unknown model {fallback!r}"))
                elif fallback == model:
                    found.append((("fallbacks", model, j), "a model cannot fall back to itself"))
        found.extend(self._margin_unit_problems())
        for step, target in self.steps.items():
            if target.tier is not None and target.tier not in tiers:
                found.append(
                    (
                        ("steps", step, "tier"),
                        f"unknown tier {target.tier!r}; tiers are {self.tiers}",
                    )
                )
        return found

    def _margin_unit_problems(self) -> list[tuple[tuple[str | int, ...], str]]:
        unit = self.scoring.margin_unit
        meaning, low, high = MARGIN_UNITS[unit]
        found: list[tuple[tuple[str | int, ...], str]] = []
        for key in ("margin", "cascade_margin"):
            value = getattr(self.thresholds, key)
            if value is not None and not low <= value <= high:
                found.append(
                    (
                        ("thresholds", key),
                        f"thresholds.{key} {value:g} is out of range: with aggregation "
                        f"{self.scoring.aggregation} a margin is {meaning} ({unit}), "
                        f"from {low:g} to {high:g}",
                    )
                )
        return found

    def step_problems(self, intent_names: Iterable[str]) -> list[tuple[tuple[str | int, ...], str]]:
        """Steps naming an intent that does not exist (known only once intents are loaded)."""
        known = set(intent_names)
        return [
            (
                ("steps", step, "intent"),
                f"unknown intent {target.intent!r}; intents are {sorted(known)}",
            )
            for step, target in self.steps.items()
            if target.intent is not None and target.intent not in known
        ]
