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
