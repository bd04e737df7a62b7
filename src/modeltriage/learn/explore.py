"""The router explorer's threshold sweep: a sample's neighbours are found once (one
embedding per request), then the decisions at any thresholds are recomputed from them
with the pure policy, fast enough to follow a slider.

Thresholds only choose between a few branches of :func:`~modeltriage.core.policy.decide`
for a given request: no match, low margin, the intent's route with a margin cascade plan,
or without one. Each case is decided once per branch (by ``decide`` itself, with the
thresholds forcing that branch) and priced and judged once (by
:func:`~modeltriage.learn.tuning.case_outcome`, as ``tune`` does); a new setting only
picks a branch per case, with numpy, and sums. The figures are ``tune``'s to the last
rounding error (``tests/test_explore.py`` checks every grid point).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from pydantic import ValidationError

from modeltriage.core.config import MARGIN_UNITS, RouterConfig, Thresholds
from modeltriage.core.costs import savings
from modeltriage.core.intents import Intent
from modeltriage.core.policy import decide
from modeltriage.core.scoring import intent_margin, score_intents
from modeltriage.errors import InputError
from modeltriage.learn.tuning import (
    DEFAULT_MIN_SIMILARITIES,
    Case,
    Point,
    QualityModel,
    case_outcome,
    default_margins,
    flagship_cost,
)

# Branches of the policy a threshold can move a case between, in the order decide()
# checks them.
NO_MATCH, LOW_MARGIN, PLANNED, ROUTED = range(4)
# Decided cases are kept for this many difficulty_confidence values (the only setting
# that changes a branch's verdict rather than which branch is taken).
_CACHED_CONFIDENCES = 8


@dataclass(frozen=True)
class Settings:
    """The thresholds the explorer moves; None turns one off, as in router.yaml."""

    margin: float | None
    cascade_margin: float | None
    min_similarity: float | None
    difficulty_confidence: float | None = None

    @classmethod
    def of(cls, config: RouterConfig) -> Settings:
        t = config.thresholds
        return cls(t.margin, t.cascade_margin, t.min_similarity, t.difficulty_confidence)

    def as_dict(self) -> dict[str, float | None]:
        return {
            "margin": self.margin,
            "cascade_margin": self.cascade_margin,
            "min_similarity": self.min_similarity,
            "difficulty_confidence": self.difficulty_confidence,
        }


def applied(config: RouterConfig, settings: Settings) -> RouterConfig:
    """``config`` with ``settings``, checked as router.yaml would be: a setting the router
    would refuse (cascade_margin not above margin, a margin out of its unit's range) is an
    ``InputError`` naming it."""
    values = {**config.thresholds.model_dump(), **settings.as_dict()}
    try:
        thresholds = Thresholds.model_validate(values)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(part) for part in first["loc"])
        raise InputError(f"thresholds{'.' if where else ''}{where}: {first['msg']}") from None
    tuned = config.model_copy(update={"thresholds": thresholds})
    meaning, low, high = MARGIN_UNITS[config.scoring.margin_unit]
    for key in ("margin", "cascade_margin"):
        value = getattr(thresholds, key)
        if value is not None and not low <= value <= high:
            raise InputError(
                f"thresholds.{key} {value:g} is out of range: a margin is {meaning} "
                f"under aggregation {config.scoring.aggregation}, from {low:g} to {high:g}"
            )
    return tuned


@dataclass(frozen=True)
class ExplorePoint:
    """One setting's figures: ``point`` is ``tune``'s (a plan counted as escalated);
    the rest says what a plan changes."""

    settings: Settings
    point: Point
    routed_tier_share: dict[str, float]  # tier of the model that answers first
    planned_share: float  # decisions carrying a cascade plan
    cost_per_request_usd: float  # every plan escalates (tune's cost)
    first_cost_per_request_usd: float  # no plan escalates
    flagship_cost_per_request_usd: float
    cases: int


@dataclass(frozen=True)
class _Branches:
    """Every case's outcome under each branch: arrays of shape (4, cases)."""

    cost: np.ndarray
    first_cost: np.ndarray
    tier: np.ndarray
    routed_tier: np.ndarray
    planned: np.ndarray
    cascaded: np.ndarray
    quality: np.ndarray  # NaN where nothing says how good the answer is
    measured: np.ndarray


class ThresholdExplorer:
    """Figures of a sample of cases at any thresholds, without re-embedding."""

    def __init__(
        self,
        cases: Sequence[Case],
        config: RouterConfig,
        intents: Mapping[str, Intent],
        quality: QualityModel,
    ) -> None:
        if not cases:
            raise InputError("the sample has no requests")
        self.cases = list(cases)
        self.config = config
        self.intents = intents
        self.quality = quality
        self._cache: dict[float | None, _Branches] = {}
        aggregation = config.scoring.aggregation
        n = len(self.cases)
        self._matched = np.zeros(n, dtype=bool)
        self._confidence = np.full(n, -1.0)
        self._runner_up = np.zeros(n, dtype=bool)
        self._margin = np.full(n, math.nan)
        for i, case in enumerate(self.cases):
            if not case.neighbours:
                continue
            ranked = score_intents(case.neighbours, aggregation)
            self._matched[i] = True
            self._confidence[i] = max(nb.similarity for nb in case.neighbours)
            self._runner_up[i] = len(ranked) > 1
            self._margin[i] = intent_margin(ranked, case.neighbours, aggregation)
        self._baseline = float(sum(flagship_cost(config, case) for case in self.cases))

    def _branches(self, difficulty_confidence: float | None) -> _Branches:
        cached = self._cache.get(difficulty_confidence)
        if cached is not None:
            return cached
        base = self.config.thresholds.model_copy(
            update={"difficulty_confidence": difficulty_confidence}
        )
        # Unvalidated copies, as tuning.with_thresholds makes: each forces one branch.
        forced: list[dict[str, float | None]] = [
            {"min_similarity": math.inf},
            {"min_similarity": None, "margin": math.inf},
            {"min_similarity": None, "margin": None, "cascade_margin": math.inf},
            {"min_similarity": None, "margin": None, "cascade_margin": None},
        ]
        rows = []
        for update in forced:
            config = self.config.model_copy(update={"thresholds": base.model_copy(update=update)})
            rows.append(
                [
                    case_outcome(
                        case,
                        decide(case.neighbours, config, self.intents, case.input_tokens),
                        self.quality,
                    )
                    for case in self.cases
                ]
            )
        tiers = {tier: i for i, tier in enumerate(self.config.tiers)}

        def grid(field: str, dtype: type = float) -> np.ndarray:
            return np.array([[getattr(o, field) for o in row] for row in rows], dtype=dtype)

        branches = _Branches(
            cost=grid("cost_usd"),
            first_cost=grid("first_cost_usd"),
            tier=np.array([[tiers[o.tier] for o in row] for row in rows], dtype=np.int64),
            routed_tier=np.array(
                [[tiers[o.routed_tier] for o in row] for row in rows], dtype=np.int64
            ),
            planned=grid("planned", bool),
            cascaded=grid("cascaded", bool),
            quality=np.array(
                [[math.nan if o.quality is None else o.quality for o in row] for row in rows]
            ),
            measured=grid("measured", bool),
        )
        if len(self._cache) >= _CACHED_CONFIDENCES:
            self._cache.pop(next(iter(self._cache)))
        self._cache[difficulty_confidence] = branches
        return branches

    def branch(self, settings: Settings) -> np.ndarray:
        """Which branch of the policy each case takes at ``settings``."""
        taken = np.full(len(self.cases), ROUTED, dtype=np.int64)
        if settings.cascade_margin is not None:
            taken[self._margin < settings.cascade_margin] = PLANNED
        if settings.margin is not None:
            taken[self._runner_up & (self._margin < settings.margin)] = LOW_MARGIN
        no_match = ~self._matched
        if settings.min_similarity is not None:
            no_match |= self._confidence < settings.min_similarity
        taken[no_match] = NO_MATCH
        return taken

    def point(self, settings: Settings) -> ExplorePoint:
        """The sample's figures at ``settings`` (not validated: see :func:`applied`)."""
        b = self._branches(settings.difficulty_confidence)
        at = (self.branch(settings), np.arange(len(self.cases)))
        n = len(self.cases)
        tiers = self.config.tiers
        answered = np.bincount(b.tier[at], minlength=len(tiers))
        routed = np.bincount(b.routed_tier[at], minlength=len(tiers))
        quality = b.quality[at]
        judged = ~np.isnan(quality)
        count = int(judged.sum())
        cost = float(b.cost[at].sum())
        point = Point(
            margin=settings.margin,
            min_similarity=settings.min_similarity,
            cost_usd=cost,
            savings=savings(cost, self._baseline),
            quality=float(quality[judged].sum()) / count if count else math.nan,
            measured_share=int(b.measured[at][judged].sum()) / max(1, count),
            tier_share={t: int(answered[i]) / n for i, t in enumerate(tiers)},
            cascade_rate=int(b.cascaded[at].sum()) / n,
            difficulty_confidence=settings.difficulty_confidence,
            flagship_share=int(answered[-1]) / n,
        )
        return ExplorePoint(
            settings=settings,
            point=point,
            routed_tier_share={t: int(routed[i]) / n for i, t in enumerate(tiers)},
            planned_share=int(b.planned[at].sum()) / n,
            cost_per_request_usd=cost / n,
            first_cost_per_request_usd=float(b.first_cost[at].sum()) / n,
            flagship_cost_per_request_usd=self._baseline / n,
            cases=n,
        )

    def curve(self, settings: Settings) -> list[Point]:
        """``tune``'s grid of margin by min_similarity at ``settings``' cascade_margin and
        difficulty_confidence (margins at or above cascade_margin left out, as tune does)."""
        ceiling = settings.cascade_margin
        margins = [
            m
            for m in default_margins(self.config.scoring.aggregation)
            if ceiling is None or m is None or m < ceiling
        ]
        return [
            self.point(
                Settings(m, settings.cascade_margin, s, settings.difficulty_confidence)
            ).point
            for m in margins
            for s in DEFAULT_MIN_SIMILARITIES
        ]
