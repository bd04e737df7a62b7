"""The service's endpoints. Each one reads the router from the app's state, calls one
library method and shapes the answer; errors map to statuses in :mod:`.error_responses`.

Who may call what (:mod:`.auth`): ``routed`` endpoints need a route key when route keys
are configured; ``admin`` ones an admin key; ``/healthz`` and ``/readyz`` are open.
"""

from __future__ import annotations

import logging
from typing import Annotated

from fastapi import APIRouter, Depends, Path, Request, Response
from fastapi.responses import JSONResponse

from modeltriage import __version__
from modeltriage.core.decision import Decision
from modeltriage.core.options import NAME_CHARS_CEILING
from modeltriage.errors import InputError, LogStoreError
from modeltriage.http.auth import require_admin, require_route
from modeltriage.http.batcher import MicroBatcher
from modeltriage.http.error_responses import error_docs
from modeltriage.http.metrics import CONTENT_TYPE, ServiceMetrics
from modeltriage.http.reload import reload_health
from modeltriage.http.schemas import (
    BatchingHealth,
    BatchRouteRequest,
    BatchRouteResponse,
    ClearedModel,
    EscalateRequest,
    EscalateResponse,
    FeedbackRequest,
    FeedbackResponse,
    Health,
    LoggedDecision,
    LogHealth,
    NextModelRequest,
    NextModelResponse,
    QueryCacheHealth,
    Readiness,
    RouteRequest,
    UnhealthyModel,
    UnhealthyModels,
    UnhealthyRequest,
)
from modeltriage.log.urls import store_kind
from modeltriage.router import Router

_log = logging.getLogger(__name__)
ModelPath = Annotated[str, Path(min_length=1, max_length=NAME_CHARS_CEILING)]
DecisionId = Annotated[str, Path(min_length=1, max_length=100)]

api = APIRouter()
# Any endpoint may find the decision log unavailable or the service overloaded (503).
routed = APIRouter(dependencies=[Depends(require_route)], responses=error_docs(401, 503))
admin = APIRouter(dependencies=[Depends(require_admin)], responses=error_docs(401, 403, 503))


def current(request: Request) -> Router:
    """The router the app's lifespan loaded."""
    served: Router = request.app.state.router
    return served


def _metrics(request: Request) -> ServiceMetrics:
    metrics: ServiceMetrics = request.app.state.metrics
    return metrics


def batcher(request: Request) -> MicroBatcher:
    """The micro-batcher the app's lifespan started."""
    gathered: MicroBatcher = request.app.state.batcher
    return gathered


@routed.post("/route", response_model=Decision, summary="Decide which model answers a request")
async def route(body: RouteRequest, request: Request) -> Decision:
    if body.text is not None and body.messages is not None:
        raise InputError("give `text` or `messages`, not both")
    text = body.text
    if body.messages is not None:
        text = current(request).messages_text(body.messages)
    if text is None:
        raise InputError("text: Field required (or give `messages`)")
    # Routed with whatever other requests arrive meanwhile (see http/batcher.py).
    (result,) = await batcher(request).route([(text, body)])
    if isinstance(result, InputError):
        raise result
    _metrics(request).decided([result])
    return result


@routed.post("/route/batch", response_model=BatchRouteResponse, summary="Route several requests")
async def route_batch(body: BatchRouteRequest, request: Request) -> BatchRouteResponse:
    current(request).check_batch(body.texts, body)
    results = await batcher(request).route([(text, body) for text in body.texts])
    decisions = [result for result in results if not isinstance(result, InputError)]
    if len(decisions) < len(results):
        raise next(result for result in results if isinstance(result, InputError))
    _metrics(request).decided(decisions)
    return BatchRouteResponse(decisions=decisions)


@routed.post(
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


@routed.post(
    "/escalate",
    response_model=EscalateResponse,
    summary="Check a cheap model's answer: escalate it, and to which model?",
    responses=error_docs(404),
)
def escalate(body: EscalateRequest, request: Request) -> EscalateResponse:
    result = current(request).escalate(
        body, model=body.model, text=body.text, decision_id=body.decision_id
    )
    return EscalateResponse(
        escalate=result.escalate,
        to_model=result.to_model,
        reasons=result.reasons,
        detail=result.detail,
        decision_id=body.decision_id,
    )


@routed.post(
    "/next-model",
    response_model=NextModelResponse,
    summary="A model failed: which model of the decision's chain to try next",
    responses=error_docs(404),
)
def failover(body: NextModelRequest, request: Request) -> NextModelResponse:
    router = current(request)
    if body.model is not None:
        result = router.failover([body.model, *body.fallbacks], body.failed)
    elif body.decision_id is not None and not body.fallbacks:
        result = router.failover(body.decision_id, body.failed)
    else:
        raise InputError("give `model` (and `fallbacks`), or the `decision_id` alone")
    return NextModelResponse(model=result.model, reason=result.reason, decision_id=body.decision_id)


@routed.get(
    "/decisions/{decision_id}",
    response_model=LoggedDecision,
    summary="A logged decision, with its failover and escalation events and feedback",
    responses={404: {"description": "no decision with this id was logged"}},
)
def logged_decision(decision_id: DecisionId, request: Request) -> LoggedDecision:
    router = current(request)
    entry = router.decision(decision_id)
    events = router.events(decision_id)
    assert router.logger is not None  # decision() refuses when logging is off
    feedback = router.logger.store.feedback(decision_id)
    return LoggedDecision(decision=entry, events=events, feedback=feedback)


@admin.post(
    "/health/models/{name}/unhealthy",
    response_model=UnhealthyModel,
    summary="Skip a model in decisions and failovers for a cooldown",
)
def mark_unhealthy(
    name: ModelPath, request: Request, body: UnhealthyRequest | None = None
) -> UnhealthyModel:
    # Passed as sent: the library compares it with health.max_cooldown_s before any
    # conversion (a 400-digit integer would overflow a float).
    left = current(request).mark_unhealthy(name, None if body is None else body.cooldown_s)
    return UnhealthyModel(model=name, seconds_left=round(left, 3))


@routed.get("/health/models", response_model=UnhealthyModels, summary="Models marked unhealthy")
def unhealthy_models(request: Request) -> UnhealthyModels:
    return UnhealthyModels(
        unhealthy=[
            UnhealthyModel(model=model, seconds_left=round(left, 3))
            for model, left in current(request).unhealthy_models().items()
        ]
    )


@admin.delete(
    "/health/models/{name}",
    response_model=ClearedModel,
    summary="Clear a model's unhealthy mark (here and in a shared log)",
)
def clear_unhealthy(name: ModelPath, request: Request) -> ClearedModel:
    return ClearedModel(model=name, cleared=current(request).clear_unhealthy(name))


@api.get("/healthz", response_model=Health, summary="Liveness and the loaded index (cheap)")
def healthz(request: Request) -> Health:
    served = current(request)
    manifest = served.manifest
    logger = served.logger
    log = None
    if logger is not None:
        log = LogHealth(
            store=store_kind(logger.store.url),
            written=logger.written,
            pending=logger.pending,
            dropped=logger.dropped,
            errors=logger.errors,
            durability=logger.durability,
            loss_window_s=logger.loss_window_s,
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
        failovers=served.failovers,
        unhealthy_models=list(served.unhealthy_models()),
        reload=reload_health(request.app),
        query_cache=query_cache_health(served),
        batching=batching_health(request),
    )


@api.get(
    "/readyz",
    response_model=Readiness,
    summary="Ready for traffic: an index is loaded and the decision log takes writes",
    responses={503: {"model": Readiness, "description": "not ready; `problems` says why"}},
)
def readyz(request: Request) -> Response:
    served = getattr(request.app.state, "router", None)
    problems: list[str] = []
    if served is None:
        problems.append("no router loaded")
    elif served.logger is not None:
        try:
            served.logger.store.check_writable()
        except LogStoreError:
            # The reason (a path, a host) goes to the server's log, not to the caller.
            _log.warning("readyz: the decision log is not writable", exc_info=True)
            problems.append("the decision log is not writable")
    ready = Readiness(ready=not problems, problems=problems)
    return JSONResponse(ready.model_dump(), status_code=200 if ready.ready else 503)


@routed.get("/metrics", summary="Prometheus metrics", response_class=Response)
def metrics(request: Request) -> Response:
    return Response(_metrics(request).render(), media_type=CONTENT_TYPE)


def query_cache_health(served: Router) -> QueryCacheHealth:
    stats = served.query_cache
    rate = stats.hit_rate
    return QueryCacheHealth(
        size=stats.size,
        capacity=stats.capacity,
        hits=stats.hits,
        misses=stats.misses,
        hit_rate=None if rate is None else round(rate, 4),
    )


def batching_health(request: Request) -> BatchingHealth:
    gathered = batcher(request)
    return BatchingHealth(batches=gathered.batches, routed=gathered.routed, queued=gathered.queued)


api.include_router(routed)
api.include_router(admin)
