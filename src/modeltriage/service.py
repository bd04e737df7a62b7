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

from . import __version__
from .decision import Decision
from .errors import InputError, MissingDependencyError, ModelTriageError
from .escalation import Reason
from .router import Router

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


class RouteRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    text: StrictStr = Field(description="the request to route", examples=["what are your hours?"])
    explain: StrictBool = Field(default=False, description="include the nearest exemplars")
    metadata: Metadata | None = None


class BatchRouteRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    texts: Annotated[list[StrictStr], Field(min_length=1)]
    explain: StrictBool = False
    metadata: Metadata | None = None


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
        default=None, min_length=1, max_length=100, description="echoed back, for correlation"
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
    reasons: list[Reason]
    detail: str
    decision_id: str | None


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
        from .decisionlog import InvalidEntryError, LogStoreError, UnknownDecisionError

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
        return current(request).route(body.text, explain=body.explain, metadata=body.metadata)

    @app.post("/route/batch", response_model=BatchRouteResponse, summary="Route several requests")
    def route_batch(body: BatchRouteRequest, request: Request) -> BatchRouteResponse:
        decisions = current(request).route_batch(
            body.texts, explain=body.explain, metadata=body.metadata
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
        )

    return app
