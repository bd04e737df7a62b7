"""Request and response bodies of the explorer's endpoints (``/explore/...``)."""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictInt, StrictStr

from modeltriage.log.entries import LogEntry

Threshold = Annotated[float, Field(strict=True, allow_inf_nan=False, ge=-1, le=2)] | None


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ThresholdsIn(Strict):
    """The thresholds to try; null turns one off, as in router.yaml."""

    margin: Threshold = Field(description="in the aggregation's margin unit")
    cascade_margin: Threshold = Field(description="in the margin's unit; above margin")
    min_similarity: Threshold = Field(description="a cosine similarity")
    difficulty_confidence: (
        Annotated[float, Field(strict=True, allow_inf_nan=False, gt=0, le=1)] | None
    ) = None


class SampleIn(Strict):
    sample: StrictStr = Field(
        default="", max_length=200, description="a file of GET /explore/samples, or `log`"
    )
    last: StrictInt = Field(
        default=1000, ge=1, le=100_000, description="with `log`: how many recent decisions"
    )


class SweepRequest(SampleIn):
    thresholds: ThresholdsIn
    requests_per_day: StrictInt = Field(default=100_000, ge=1, le=10**12)
    curve: StrictBool = Field(default=True, description="also the cost/quality grid of tune")


class CompareRequest(SampleIn):
    thresholds: ThresholdsIn
    requests_per_day: StrictInt = Field(default=100_000, ge=1, le=10**12)
    plans: StrictBool = Field(default=True, description="cascade plans on or off")
    escalation_rate: Annotated[float, Field(strict=True, allow_inf_nan=False, ge=0, le=1)] = 1.0


class ApplyRequest(Strict):
    thresholds: ThresholdsIn


class ExploreRouteRequest(Strict):
    text: StrictStr = Field(description="the request to route (not logged)")


class SampleInfo(BaseModel):
    name: str
    path: str


class ExploreInfo(BaseModel):
    samples: list[SampleInfo]
    default_sample: str | None
    log: bool = Field(description="whether decisions are logged (the `log` sample)")
    thresholds: dict[str, float | None] = Field(description="router.yaml's")
    margin_range: tuple[float, float]
    margin_unit: str
    difficulty_confidence_used: bool
    tiers: list[str]
    intents: list[str]
    reasons: list[str]
    examples: list[str] = Field(description="requests of the default sample, to pick from")


class PointOut(BaseModel):
    margin: float | None
    min_similarity: float | None
    savings: float
    quality: float | None
    cost_per_request_usd: float


class SweepResponse(BaseModel):
    sample: str
    cases: int
    labelled: bool
    source: str
    thresholds: dict[str, float | None]
    savings: float = Field(description="tune's: every cascade plan counted as escalated")
    savings_no_escalation: float
    quality: float | None
    measured_share: float
    tier_share: dict[str, float] = Field(description="tune's: the tier that answers last")
    routed_tier_share: dict[str, float] = Field(description="the tier that answers first")
    cascade_rate: float
    planned_share: float
    cost_per_day_usd: float
    cost_per_day_no_escalation_usd: float
    flagship_cost_per_day_usd: float
    flagship_quality: float | None
    curve: list[PointOut]
    frontier: list[PointOut]
    elapsed_ms: float = Field(description="server time to recompute the decisions")


class StrategyOut(BaseModel):
    name: str
    cost_per_day_usd: float
    quality: float | None
    quality_low: float | None
    tier_share: dict[str, float]


class CompareResponse(BaseModel):
    sample: str
    strategies: list[StrategyOut]
    savings: float
    planned_rate: float
    escalation_rate: float
    cascade_rate: float
    daily_cost_no_escalation_usd: float
    daily_cost_all_escalate_usd: float
    oracle: str


class YamlResponse(BaseModel):
    yaml: str


class ApplyResponse(BaseModel):
    path: str
    backup: str
    yaml: str
    note: str


class DecisionList(BaseModel):
    decisions: list[LogEntry]
