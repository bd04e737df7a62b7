"""The service's request and response bodies. Requests extend the library's own input
models (``RouteOptions``, ``Answer``), so both accept exactly the same fields."""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, StrictFloat, StrictInt, StrictStr

from modeltriage.core.decision import Decision, Message
from modeltriage.core.escalation_settings import Signal
from modeltriage.core.options import NAME_CHARS_CEILING, RouteOptions
from modeltriage.followup.answers import Answer
from modeltriage.log.entries import EventEntry, FeedbackEntry, LogEntry


class Body(BaseModel):
    """A request body built on a library input model (``RouteOptions``, ``Answer``): it
    keeps pydantic's own ``__init__``, so a bad field is a validation error located at the
    field, not the library caller's ``InputError`` of :class:`~.options.CallerInput`."""

    __init__ = BaseModel.__init__


class RouteRequest(Body, RouteOptions):
    text: StrictStr | None = Field(
        default=None, description="the request to route", examples=["what are your hours?"]
    )
    messages: Annotated[list[Message], Field(min_length=1, max_length=1000)] | None = Field(
        default=None,
        description="instead of text: a conversation, routed by its last user turn",
    )


class BatchRouteRequest(Body, RouteOptions):
    texts: Annotated[list[StrictStr], Field(min_length=1)]


# The ceiling: limits.max_name_chars (default 200) is checked by the library.
ModelName = Annotated[StrictStr, Field(min_length=1, max_length=NAME_CHARS_CEILING)]


class NextModelRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    decision_id: StrictStr | None = Field(
        default=None,
        min_length=1,
        max_length=100,
        description="a logged decision: its model and fallbacks are the chain (omit `model` "
        "and `fallbacks`); with `model`, only echoed back and recorded with the failover",
    )
    model: ModelName | None = Field(
        default=None, description="the decision's model (unless `decision_id` is given)"
    )
    fallbacks: Annotated[list[ModelName], Field(max_length=100)] = Field(
        default_factory=list, description="the decision's fallbacks"
    )
    failed: Annotated[list[ModelName], Field(min_length=1, max_length=100)] = Field(
        description="models that errored or timed out"
    )


class NextModelResponse(BaseModel):
    model: str | None = Field(description="the model to try next; null when none is left")
    reason: str
    decision_id: str | None


class UnhealthyRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    # Integers are not checked for finiteness (a 400-digit one would overflow the check):
    # the library compares any size with health.max_cooldown_s and names the limit.
    cooldown_s: (
        Annotated[Annotated[StrictFloat, Field(allow_inf_nan=False)] | StrictInt, Field(gt=0)]
        | None
    ) = Field(
        default=None,
        description="default: health.cooldown_s of router.yaml; at most health.max_cooldown_s",
    )


class UnhealthyModel(BaseModel):
    model: str
    seconds_left: float


class ClearedModel(BaseModel):
    model: str
    cleared: bool = Field(description="false: the model had no mark")


class Readiness(BaseModel):
    ready: bool
    problems: list[str]


class UnhealthyModels(BaseModel):
    unhealthy: list[UnhealthyModel]


class FeedbackRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    decision_id: StrictStr = Field(min_length=1, max_length=100)
    quality: StrictFloat | StrictInt = Field(ge=0, le=1, description="0 = useless, 1 = perfect")
    source: StrictStr = Field(
        default="user", min_length=1, max_length=64, examples=["user", "judge"]
    )
    model: ModelName | None = Field(default=None, description="the model that really answered")


class FeedbackResponse(BaseModel):
    status: str
    decision_id: str


class LogHealth(BaseModel):
    store: str = Field(description="the kind of store: sqlite, postgresql or memory (no path)")
    written: int
    pending: int
    dropped: int
    errors: int
    durability: str = Field(description="log.durability: ack or async")
    loss_window_s: float = Field(
        description="seconds of answered decisions a hard kill may lose (0 with ack)"
    )


class EscalateRequest(Body, Answer):
    model: ModelName | None = Field(
        default=None, description="the model that answered; default: the routed model of `text`"
    )
    text: StrictStr | None = Field(
        default=None, description="the request: escalate along its routed fallbacks"
    )
    decision_id: StrictStr | None = Field(
        default=None,
        min_length=1,
        max_length=100,
        description="the /route decision: with a decision log, its model, cascade plan and "
        "fallbacks say where to escalate (unknown id: 404); echoed back",
    )


class EscalateResponse(BaseModel):
    escalate: bool
    to_model: str | None = Field(description="the next model up; null if staying or at the top")
    reasons: list[Signal]
    detail: str
    decision_id: str | None


class LoggedDecision(BaseModel):
    """A decision as the log keeps it (its text only with `log.store_text`), with what
    happened after it."""

    decision: LogEntry
    events: list[EventEntry] = Field(description="failovers and answer checks, oldest first")
    feedback: list[FeedbackEntry] = Field(description="quality signals, oldest first")


class BatchRouteResponse(BaseModel):
    decisions: list[Decision]


class ReloadResponse(BaseModel):
    reloaded: bool
    index_version: str
    previous_version: str
    error: str | None
    notes: list[str]
    took_ms: float


class ReloadHealth(BaseModel):
    """``/healthz``'s view of hot reload."""

    serving: str
    reloads: int
    failed_reloads: int
    last_error: str | None
    last_reload_at: str | None
    watch: bool


class QueryCacheHealth(BaseModel):
    size: int
    capacity: int
    hits: int
    misses: int
    hit_rate: float | None = Field(description="hits over lookups; null before the first")


class BatchingHealth(BaseModel):
    batches: int = Field(description="encoder calls made for /route and /route/batch")
    routed: int = Field(description="texts routed in them")
    queued: int = Field(description="texts waiting now")


class Health(BaseModel):
    status: str
    version: str
    index_version: str
    encoder: str
    intents: int
    exemplars: int
    built_at: str
    log: LogHealth | None
    failovers: int = Field(description="POST /next-model (failover) requests since start")
    unhealthy_models: list[str]
    reload: ReloadHealth | None = None
    query_cache: QueryCacheHealth | None = None
    batching: BatchingHealth | None = None
