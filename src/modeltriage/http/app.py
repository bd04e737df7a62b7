"""FastAPI service: ``create_app()`` returns an app that routes and never calls an LLM.

The router lives on ``app.state`` for the app's lifetime (set up in the lifespan), so
several apps with different intents can coexist in one process.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictFloat, StrictInt, StrictStr

from modeltriage import __version__
from modeltriage.core.decision import Decision, Message
from modeltriage.core.escalation_settings import Signal
from modeltriage.errors import InputError, MissingDependencyError, ModelTriageError
from modeltriage.log.entries import EventEntry, FeedbackEntry, LogEntry
from modeltriage.router import Router

try:
    from fastapi import FastAPI, Request, Response
    from fastapi.responses import JSONResponse
except ImportError:  # pragma: no cover - exercised only without the extra
    raise MissingDependencyError("fastapi", "serve") from None


MetadataValue = StrictStr | StrictInt | StrictFloat | StrictBool | None
Metadata = Annotated[
    dict[Annotated[str, Field(max_length=100)], MetadataValue],
    Field(max_length=50, description="stored with the logged decision: tenant, conversation..."),
]


Budget = Annotated[StrictFloat | StrictInt, Field(gt=0, allow_inf_nan=False)]


class RouteOptions(BaseModel):
    """Budgets and the pipeline step, shared by /route and /route/batch."""

    model_config = ConfigDict(extra="forbid")

    max_latency_ms: Budget | None = Field(
        default=None, description="only models whose typical_latency_ms is within it"
    )
    max_cost_usd: Budget | None = Field(
        default=None, description="only models whose estimated cost is within it"
    )
    step: StrictStr | None = Field(
        default=None, max_length=200, description="a pipeline step of router.yaml's `steps`"
    )

    @property
    def latency(self) -> float | None:
        return None if self.max_latency_ms is None else float(self.max_latency_ms)

    @property
    def cost(self) -> float | None:
        return None if self.max_cost_usd is None else float(self.max_cost_usd)


class RouteRequest(RouteOptions):
    text: StrictStr | None = Field(
        default=None, description="the request to route", examples=["what are your hours?"]
    )
    messages: Annotated[list[Message], Field(min_length=1, max_length=1000)] | None = Field(
        default=None,
        description="instead of text: a conversation, routed by its last user turn",
    )
    conversation_id: StrictStr | None = Field(
        default=None,
        min_length=1,
        max_length=200,
        description="with conversation.sticky: the conversation does not go down tiers",
    )
    explain: StrictBool = Field(default=False, description="include the nearest exemplars")
    metadata: Metadata | None = None


class BatchRouteRequest(RouteOptions):
    texts: Annotated[list[StrictStr], Field(min_length=1)]
    explain: StrictBool = False
    metadata: Metadata | None = None


ModelName = Annotated[StrictStr, Field(min_length=1, max_length=200)]


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

    cooldown_s: Annotated[StrictFloat | StrictInt, Field(gt=0, allow_inf_nan=False)] | None = Field(
        default=None, description="default: health.cooldown_s of router.yaml"
    )


class UnhealthyModel(BaseModel):
    model: str
    seconds_left: float


class UnhealthyModels(BaseModel):
    unhealthy: list[UnhealthyModel]


class FeedbackRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    decision_id: StrictStr = Field(min_length=1, max_length=100)
    quality: StrictFloat | StrictInt = Field(ge=0, le=1, description="0 = useless, 1 = perfect")
    source: StrictStr = Field(
        default="user", min_length=1, max_length=64, examples=["user", "judge"]
    )
    model: StrictStr | None = Field(default=None, description="the model that really answered")


class FeedbackResponse(BaseModel):
    status: str
    decision_id: str


class LogHealth(BaseModel):
    store: str
    written: int
    pending: int
    dropped: int
    errors: int


LogProb = Annotated[StrictFloat | StrictInt, Field(le=0, allow_inf_nan=False)]


class EscalateRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    answer: StrictStr = Field(description="the answer the cheap model gave")
    model: StrictStr | None = Field(
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
    confidence: StrictFloat | StrictInt | None = Field(
        default=None, ge=0, le=1, description="the model's own 0..1 rating of its answer"
    )
    logprobs: Annotated[list[LogProb], Field(max_length=262_144)] | None = Field(
        default=None, description="the answer's token log-probabilities"
    )
    finish_reason: StrictStr | None = Field(
        default=None, max_length=64, examples=["stop", "length"]
    )
    second_answer: StrictStr | None = Field(
        default=None, description="a second cheap model's answer to the same request"
    )
    choices: list[StrictStr] | dict[StrictStr, StrictStr] | None = Field(
        default=None,
        description="multiple-choice labels, or labels with option texts: the answer must "
        "pick one, and a second answer is compared by the choice picked",
        examples=[["A", "B", "C", "D"], {"A": "Ian", "B": "Dennis"}],
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


# JSON escaping can at most multiply a text's bytes by six ("\u00e9"-style escapes).
_JSON_OVERHEAD = 6


def _too_large(size: int, cap: int) -> JSONResponse:
    return JSONResponse(
        {"detail": f"request body of {size} bytes is over the limit of {cap}"}, status_code=413
    )


def create_app(
    intents_dir: Path | str = "intents",
    *,
    router: Router | None = None,
    build_if_needed: bool = False,
) -> FastAPI:
    """Build the service. Pass ``router`` to serve an already loaded one (tests, CLI)."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if router is not None:
            app.state.router = router
            yield  # the caller owns the router and closes it
            return
        app.state.router = Router.load(intents_dir, build_if_needed=build_if_needed)
        try:
            yield
        finally:
            # Flush the decision log: a clean shutdown loses no logged rows.
            app.state.router.close()

    app = FastAPI(
        title="modeltriage",
        version=__version__,
        summary="Decides which LLM should answer a request. It never calls an LLM.",
        lifespan=lifespan,
    )

    def current(request: Request) -> Router:
        routed: Router = request.app.state.router
        return routed

    @app.middleware("http")
    async def limit_body(
        request: Request, call_next: Callable[[Request], Awaitable[Response]]
    ) -> Response:
        if request.method != "POST":
            return await call_next(request)
        limits = current(request).config.limits
        cap = limits.max_text_bytes * limits.max_batch * _JSON_OVERHEAD + 4096
        # Refuse oversized bodies from their header, before reading them into memory.
        length = request.headers.get("content-length")
        if length is not None and length.isdigit() and int(length) > cap:
            return _too_large(int(length), cap)
        body = await request.body()
        if len(body) > cap:
            return _too_large(len(body), cap)
        try:
            body.decode("utf-8")
        except UnicodeDecodeError as exc:
            return JSONResponse(
                {"detail": f"request body is not valid UTF-8 (byte {exc.start})"},
                status_code=400,
            )
        return await call_next(request)

    @app.exception_handler(InputError)
    async def input_error(request: Request, exc: InputError) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, status_code=413 if exc.too_large else 422)

    @app.exception_handler(ModelTriageError)
    async def library_error(request: Request, exc: ModelTriageError) -> JSONResponse:
        from modeltriage.errors import InvalidEntryError, LogStoreError, UnknownDecisionError

        status = 500
        if isinstance(exc, UnknownDecisionError):
            status = 404
        elif isinstance(exc, InvalidEntryError):
            status = 422
        elif isinstance(exc, LogStoreError):
            status = 503
        return JSONResponse({"detail": str(exc)}, status_code=status)

    @app.post("/route", response_model=Decision, summary="Decide which model answers a request")
    def route(body: RouteRequest, request: Request) -> Decision:
        if body.text is not None and body.messages is not None:
            raise InputError("give `text` or `messages`, not both")
        if body.messages is not None:
            return current(request).route_messages(
                body.messages,
                explain=body.explain,
                metadata=body.metadata,
                max_latency_ms=body.latency,
                max_cost_usd=body.cost,
                step=body.step,
                conversation_id=body.conversation_id,
            )
        if body.text is None:
            raise InputError("text: Field required (or give `messages`)")
        return current(request).route(
            body.text,
            explain=body.explain,
            metadata=body.metadata,
            max_latency_ms=body.latency,
            max_cost_usd=body.cost,
            step=body.step,
            conversation_id=body.conversation_id,
        )

    @app.post("/route/batch", response_model=BatchRouteResponse, summary="Route several requests")
    def route_batch(body: BatchRouteRequest, request: Request) -> BatchRouteResponse:
        decisions = current(request).route_batch(
            body.texts,
            explain=body.explain,
            metadata=body.metadata,
            max_latency_ms=body.latency,
            max_cost_usd=body.cost,
            step=body.step,
        )
        return BatchRouteResponse(decisions=decisions)

    @app.post(
        "/feedback",
        response_model=FeedbackResponse,
        status_code=201,
        summary="Attach a quality signal to a logged decision",
        responses={404: {"description": "no decision with this id was logged"}},
    )
    def feedback(body: FeedbackRequest, request: Request) -> FeedbackResponse:
        current(request).feedback(
            body.decision_id, float(body.quality), source=body.source, model=body.model
        )
        return FeedbackResponse(status="recorded", decision_id=body.decision_id)

    @app.post(
        "/escalate",
        response_model=EscalateResponse,
        summary="Check a cheap model's answer: escalate it, and to which model?",
    )
    def escalate(body: EscalateRequest, request: Request) -> EscalateResponse:
        result = current(request).escalate(
            body.answer,
            model=body.model,
            text=body.text,
            decision_id=body.decision_id,
            confidence=None if body.confidence is None else float(body.confidence),
            logprobs=None if body.logprobs is None else [float(x) for x in body.logprobs],
            finish_reason=body.finish_reason,
            second_answer=body.second_answer,
            choices=body.choices,
        )
        return EscalateResponse(
            escalate=result.escalate,
            to_model=result.to_model,
            reasons=result.reasons,
            detail=result.detail,
            decision_id=body.decision_id,
        )

    @app.post(
        "/next-model",
        response_model=NextModelResponse,
        summary="A model failed: which model of the decision's chain to try next",
    )
    def next_model(body: NextModelRequest, request: Request) -> NextModelResponse:
        router = current(request)
        if body.model is not None:
            result = router.failover([body.model, *body.fallbacks], body.failed)
        elif body.decision_id is not None and not body.fallbacks:
            result = router.failover(body.decision_id, body.failed)
        else:
            raise InputError("give `model` (and `fallbacks`), or the `decision_id` alone")
        return NextModelResponse(
            model=result.model, reason=result.reason, decision_id=body.decision_id
        )

    @app.get(
        "/decisions/{decision_id}",
        response_model=LoggedDecision,
        summary="A logged decision, with its failover and escalation events and feedback",
        responses={404: {"description": "no decision with this id was logged"}},
    )
    def logged_decision(decision_id: str, request: Request) -> LoggedDecision:
        router = current(request)
        entry = router.decision(decision_id)
        events = router.events(decision_id)
        assert router.logger is not None  # decision() refuses when logging is off
        feedback = router.logger.store.feedback(decision_id)
        return LoggedDecision(decision=entry, events=events, feedback=feedback)

    @app.post(
        "/health/models/{name}/unhealthy",
        response_model=UnhealthyModel,
        summary="Skip a model in decisions and failovers for a cooldown",
    )
    def mark_unhealthy(
        name: str, request: Request, body: UnhealthyRequest | None = None
    ) -> UnhealthyModel:
        cooldown = None if body is None or body.cooldown_s is None else float(body.cooldown_s)
        left = current(request).mark_unhealthy(name, cooldown)
        return UnhealthyModel(model=name, seconds_left=round(left, 3))

    @app.get("/health/models", response_model=UnhealthyModels, summary="Models marked unhealthy")
    def unhealthy_models(request: Request) -> UnhealthyModels:
        return UnhealthyModels(
            unhealthy=[
                UnhealthyModel(model=model, seconds_left=round(left, 3))
                for model, left in current(request).unhealthy_models().items()
            ]
        )

    @app.get("/healthz", response_model=Health, summary="Liveness and the loaded index")
    def healthz(request: Request) -> Health:
        routed = current(request)
        manifest = routed.manifest
        logger = routed.logger
        log = None
        if logger is not None:
            log = LogHealth(
                store=logger.store.url,
                written=logger.written,
                pending=logger.pending,
                dropped=logger.dropped,
                errors=logger.errors,
            )
        return Health(
            status="ok",
            version=__version__,
            index_version=manifest.version,
            encoder=manifest.encoder,
            intents=manifest.intents,
            exemplars=manifest.exemplars,
            built_at=manifest.built_at,
            log=log,
            failovers=routed.failovers,
            unhealthy_models=list(routed.unhealthy_models()),
        )

    return app
