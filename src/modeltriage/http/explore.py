"""The router explorer: its page at ``/ui`` (static files of this package) and the JSON
endpoints behind it, ``/explore/...``. Each endpoint calls the library
(:mod:`modeltriage.learn.explore` and its siblings) and shapes the answer."""

from __future__ import annotations

import math
import time
from pathlib import Path

from fastapi import APIRouter, Depends, FastAPI, Query, Request
from fastapi.responses import RedirectResponse
from fastapi.staticfiles import StaticFiles

from modeltriage.core.config import MARGIN_UNITS, ROUTER_CONFIG_FILE
from modeltriage.core.decision import Decision, Reason
from modeltriage.core.options import RouteOptions
from modeltriage.errors import InputError
from modeltriage.http.auth import require_admin, require_route
from modeltriage.http.error_responses import error_docs
from modeltriage.http.explore_schemas import (
    ApplyRequest,
    ApplyResponse,
    CompareRequest,
    CompareResponse,
    DecisionList,
    ExploreInfo,
    ExploreRouteRequest,
    PointOut,
    SampleInfo,
    StrategyOut,
    SweepRequest,
    SweepResponse,
    ThresholdsIn,
    YamlResponse,
)
from modeltriage.http.routes import current
from modeltriage.learn.explore import Settings, applied
from modeltriage.learn.explore_compare import compare
from modeltriage.learn.explore_samples import SampleCache, filter_entries
from modeltriage.learn.tuning import Point, flagship_quality
from modeltriage.learn.tuning_report import pareto
from modeltriage.learn.tuning_save import thresholds_yaml, write_thresholds

STATIC = Path(__file__).resolve().parent / "static"
REASONS: tuple[Reason, ...] = (
    "confident",
    "specialised_model",
    "cascade",
    "low_margin",
    "no_match",
    "step",
    "over_budget",
)

explore = APIRouter(
    prefix="/explore",
    tags=["explorer"],
    dependencies=[Depends(require_route)],
    responses=error_docs(401, 503),
)


def samples(request: Request) -> SampleCache:
    cache: SampleCache = request.app.state.samples
    router = current(request)
    if cache.router is not router:
        # A reload swapped the router: cached neighbours belong to the old index.
        cache = SampleCache(router, cache.directory)
        request.app.state.samples = cache
    return cache


def _settings(body: ThresholdsIn) -> Settings:
    return Settings(
        body.margin, body.cascade_margin, body.min_similarity, body.difficulty_confidence
    )


def _finite(value: float) -> float | None:
    return None if math.isnan(value) else value


def _point(p: Point, cases: int) -> PointOut:
    return PointOut(
        margin=p.margin,
        min_similarity=p.min_similarity,
        savings=p.savings,
        quality=_finite(p.quality),
        cost_per_request_usd=p.cost_usd / cases,
    )


@explore.get("/samples", response_model=ExploreInfo, summary="What the explorer can show")
def info(request: Request) -> ExploreInfo:
    router = current(request)
    config = router.config
    _, low, high = MARGIN_UNITS[config.scoring.margin_unit]
    cache = samples(request)
    return ExploreInfo(
        samples=[SampleInfo(name=name, path=str(path)) for name, path in cache.files().items()],
        default_sample=cache.default(),
        log=router.logger is not None,
        thresholds=Settings.of(config).as_dict(),
        margin_range=(low, high),
        margin_unit=config.scoring.margin_unit,
        difficulty_confidence_used=config.thresholds.difficulty_confidence is not None,
        tiers=list(config.tiers),
        intents=sorted(i.name for i in router.intent_set.intents),
        reasons=list(REASONS),
        examples=cache.examples(),
    )


@explore.post("/route", response_model=Decision, summary="Route a request without logging it")
def explore_route(body: ExploreRouteRequest, request: Request) -> Decision:
    return current(request).route(body.text, RouteOptions(explain=True), log=False)


@explore.post(
    "/sweep",
    response_model=SweepResponse,
    summary="A sample's cost and quality at some thresholds, from cached neighbours",
)
def sweep(body: SweepRequest, request: Request) -> SweepResponse:
    settings = _settings(body.thresholds)
    applied(current(request).config, settings)  # before routing a sample for nothing
    sample = samples(request).get(body.sample, body.last)
    explorer = sample.explorer
    started = time.perf_counter()
    at = explorer.point(settings)
    elapsed = (time.perf_counter() - started) * 1000
    grid = explorer.curve(settings) if body.curve else []
    p, n, scale = at.point, at.cases, body.requests_per_day
    first_savings = 1 - at.first_cost_per_request_usd / at.flagship_cost_per_request_usd
    baseline_quality = flagship_quality(sample.found.cases, explorer.config, explorer.quality)
    return SweepResponse(
        sample=sample.name,
        cases=n,
        labelled=sample.labelled,
        source=sample.found.source,
        thresholds=settings.as_dict(),
        savings=p.savings,
        savings_no_escalation=first_savings if at.flagship_cost_per_request_usd > 0 else 0.0,
        quality=_finite(p.quality),
        measured_share=p.measured_share,
        tier_share=p.tier_share,
        routed_tier_share=at.routed_tier_share,
        cascade_rate=p.cascade_rate,
        planned_share=at.planned_share,
        cost_per_day_usd=at.cost_per_request_usd * scale,
        cost_per_day_no_escalation_usd=at.first_cost_per_request_usd * scale,
        flagship_cost_per_day_usd=at.flagship_cost_per_request_usd * scale,
        flagship_quality=_finite(baseline_quality),
        curve=[_point(q, n) for q in grid],
        frontier=[_point(q, n) for q in pareto(grid)],
        elapsed_ms=round(elapsed, 3),
    )


@explore.post(
    "/compare",
    response_model=CompareResponse,
    summary="Routed against always-flagship and always-cheapest, per day",
)
def compare_strategies(body: CompareRequest, request: Request) -> CompareResponse:
    settings = _settings(body.thresholds)
    applied(current(request).config, settings)
    sample = samples(request).get(body.sample, body.last)
    result = compare(
        sample,
        settings,
        plans=body.plans,
        escalation_rate=body.escalation_rate,
        requests_per_day=body.requests_per_day,
    )
    report = result.simulation
    return CompareResponse(
        sample=sample.name,
        strategies=[
            StrategyOut(
                name=s.name,
                cost_per_day_usd=s.cost_per_day_usd,
                quality=s.quality,
                quality_low=s.quality_low,
                tier_share=s.tier_share,
            )
            for s in result.strategies
        ],
        savings=report.savings_share,
        planned_rate=report.planned_rate,
        escalation_rate=report.escalation_rate,
        cascade_rate=report.cascade_rate,
        daily_cost_no_escalation_usd=report.daily_cost_no_escalation_usd,
        daily_cost_all_escalate_usd=report.daily_cost_all_escalate_usd,
        oracle=result.oracle,
    )


def _yaml(request: Request, body: ApplyRequest) -> tuple[Settings, str]:
    settings = _settings(body.thresholds)
    applied(current(request).config, settings)
    values = {k: v for k, v in settings.as_dict().items() if k != "difficulty_confidence"}
    if settings.difficulty_confidence is not None:
        values["difficulty_confidence"] = settings.difficulty_confidence
    return settings, thresholds_yaml(values)


@explore.post("/yaml", response_model=YamlResponse, summary="The thresholds as router.yaml")
def as_yaml(body: ApplyRequest, request: Request) -> YamlResponse:
    return YamlResponse(yaml=_yaml(request, body)[1])


@explore.post(
    "/apply",
    response_model=ApplyResponse,
    summary="Write the thresholds into router.yaml, keeping a backup (admin key needed)",
    dependencies=[Depends(require_admin)],
    responses=error_docs(401, 403),
)
def apply(body: ApplyRequest, request: Request) -> ApplyResponse:
    settings, yaml = _yaml(request, body)
    source = current(request).intent_set.source
    if source is None:
        raise InputError("this router was not loaded from a directory: no router.yaml to write")
    path = source / ROUTER_CONFIG_FILE
    backup = write_thresholds(
        path,
        settings.margin,
        settings.min_similarity,
        settings.difficulty_confidence,
        cascade_margin=settings.cascade_margin,
    )
    return ApplyResponse(
        path=str(path),
        backup=str(backup),
        yaml=yaml,
        note="router.yaml is updated; restart the service to route with it",
    )


@explore.get("/decisions", response_model=DecisionList, summary="Recent logged decisions, filtered")
def decisions(
    request: Request,
    reason: str | None = Query(default=None, max_length=50),
    tier: str | None = Query(default=None, max_length=200),
    intent: str | None = Query(default=None, max_length=200),
    limit: int = Query(default=50, ge=1, le=500),
) -> DecisionList:
    logger = current(request).logger
    if logger is None:
        raise InputError("decision logging is off (no log.url in router.yaml)")
    logger.flush(timeout=2.0)
    entries = logger.store.decisions(limit=5000)
    return DecisionList(
        decisions=filter_entries(entries, reason=reason, tier=tier, intent=intent, limit=limit)
    )


def install_explorer(app: FastAPI) -> None:
    """Serve the page at /ui and its endpoints; the sample cache is made in the lifespan
    (``app.state.samples``) once the router is loaded."""
    app.include_router(explore)

    @app.get("/ui", include_in_schema=False)
    def ui_root() -> RedirectResponse:
        return RedirectResponse("/ui/")

    app.mount("/ui/", StaticFiles(directory=STATIC, html=True), name="ui")
