"""Table tests of the pure policy: neighbours + config -> verdict, no encoder, no index."""

from __future__ import annotations

import pytest
import yaml

from modeltriage.core.config import RouterConfig
from modeltriage.core.costs import cheapest_in_tier, estimate_tokens, fallback_chain
from modeltriage.core.decision import Neighbour
from modeltriage.core.intents import Intent
from modeltriage.core.policy import decide
from modeltriage.core.scoring import score_intents, vote_difficulty

from .conftest import ROUTER_YAML

CONFIG = RouterConfig.model_validate(yaml.safe_load(ROUTER_YAML))
INTENTS = {
    "hours": Intent(name="hours", difficulty="easy", exemplars=[{"text": "x"}]),
    "refund": Intent(name="refund", difficulty="moderate", exemplars=[{"text": "x"}]),
    "code": Intent(name="code", difficulty="hard", model="coder", exemplars=[{"text": "x"}]),
    "legal": Intent(name="legal", difficulty="hard", exemplars=[{"text": "x"}]),
}


def n(intent: str, similarity: float, difficulty: str | None = None) -> Neighbour:
    default = INTENTS[intent].difficulty if intent in INTENTS else "easy"
    return Neighbour(
        intent=intent,
        text=f"{intent}-{similarity}",
        difficulty=difficulty or default,
        similarity=similarity,
    )


def with_thresholds(**thresholds: float | None) -> RouterConfig:
    return CONFIG.model_copy(update={"thresholds": CONFIG.thresholds.model_copy(update=thresholds)})


@pytest.mark.parametrize(
    ("aggregation", "neighbours", "expected"),
    [
        (
            "max",
            [n("hours", 0.9), n("refund", 0.8), n("refund", 0.79)],
            [("hours", 0.9), ("refund", 0.8)],
        ),
        # mean of the top two; a lone neighbour is paired with the k-th similarity.
        (
            "mean_top2",
            [n("hours", 0.9), n("refund", 0.8), n("refund", 0.79)],
            [("hours", 0.845), ("refund", 0.795)],
        ),
        (
            "mean_top2",
            [n("hours", 0.9), n("refund", 0.88), n("refund", 0.87)],
            [("refund", 0.875), ("hours", 0.885)][::-1],
        ),
        # ties in score are broken by name, so the order is deterministic
        ("max", [n("refund", 0.5), n("hours", 0.5)], [("hours", 0.5), ("refund", 0.5)]),
    ],
)
def test_score_intents(
    aggregation: str, neighbours: list[Neighbour], expected: list[tuple[str, float]]
) -> None:
    got = [(s.intent, round(s.score, 6)) for s in score_intents(neighbours, aggregation)]  # type: ignore[arg-type]
    assert got == [(i, round(s, 6)) for i, s in expected]


def test_vote_scores_sum_to_one_and_favour_the_nearest() -> None:
    scores = score_intents([n("hours", 0.9), n("refund", 0.85), n("refund", 0.84)], "vote")
    assert sum(s.score for s in scores) == pytest.approx(1.0)
    assert scores[0].intent == "hours"


def test_score_intents_of_nothing_is_empty() -> None:
    assert score_intents([], "max") == []


@pytest.mark.parametrize(
    ("neighbours", "expected"),
    [
        ([n("code", 0.9, "hard"), n("code", 0.8, "hard")], "hard"),
        ([n("code", 0.9, "easy"), n("code", 0.5, "hard")], "easy"),
        # many distant votes do not outweigh one close exemplar...
        ([n("code", 0.9, "easy"), n("code", 0.6, "hard"), n("code", 0.6, "hard")], "easy"),
        # ...but several nearly as close ones do
        ([n("code", 0.9, "easy"), n("code", 0.88, "hard"), n("code", 0.88, "hard")], "hard"),
        # exact tie goes to the harder difficulty
        ([n("code", 0.5, "easy"), n("code", 0.5, "hard")], "hard"),
    ],
)
def test_vote_difficulty(neighbours: list[Neighbour], expected: str) -> None:
    assert vote_difficulty(neighbours) == expected


SPLIT_VOTE = [
    n("code", 0.9, "easy"),
    n("code", 0.9, "easy"),
    n("code", 0.9, "moderate"),
    n("code", 0.9, "hard"),
]


@pytest.mark.parametrize(
    ("confidence", "expected"),
    [
        (None, "easy"),  # most votes
        (0.5, "easy"),  # easy holds half the vote
        (0.6, "moderate"),  # easy + moderate hold 0.75
        (0.75, "moderate"),
        (0.8, "hard"),
        (1.0, "hard"),
    ],
)
def test_difficulty_confidence(confidence: float | None, expected: str) -> None:
    assert vote_difficulty(SPLIT_VOTE, confidence) == expected


def test_difficulty_confidence_in_decide() -> None:
    strict = with_thresholds(difficulty_confidence=0.9)
    neighbours = [n("hours", 0.9, "easy"), n("hours", 0.9, "moderate"), n("refund", 0.5)]
    assert decide(neighbours, CONFIG, INTENTS, 10).tier == "mid"  # tie -> harder
    neighbours = [n("hours", 0.9, "easy"), n("hours", 0.88, "moderate"), n("refund", 0.5)]
    assert decide(neighbours, CONFIG, INTENTS, 10).tier == "small"
    assert decide(neighbours, strict, INTENTS, 10).tier == "mid"


@pytest.mark.parametrize(
    ("neighbours", "thresholds", "expected"),
    [
        # confident easy match -> cheapest small model
        (
            [n("hours", 0.9), n("refund", 0.5)],
            {},
            ("hours", "easy", "small", "small-a", "confident", False),
        ),
        (
            [n("refund", 0.8), n("hours", 0.6)],
            {},
            ("refund", "moderate", "mid", "mid-a", "confident", False),
        ),
        (
            [n("legal", 0.8), n("hours", 0.6)],
            {},
            ("legal", "hard", "flagship", "big-a", "confident", False),
        ),
        # the intent's specialised model
        (
            [n("code", 0.8), n("hours", 0.6)],
            {},
            ("code", "hard", "mid", "coder", "specialised_model", False),
        ),
        # an exemplar override that wins the vote routes by tier, not to the specialised model
        (
            [n("code", 0.8, "easy"), n("hours", 0.6)],
            {},
            ("code", "easy", "small", "small-a", "confident", False),
        ),
        # too close to call -> flagship, intent still reported
        (
            [n("hours", 0.80), n("refund", 0.79)],
            {},
            ("hours", "easy", "flagship", "big-a", "low_margin", True),
        ),
        # below min_similarity -> no match, no intent
        (
            [n("hours", 0.15), n("refund", 0.1)],
            {},
            (None, None, "flagship", "big-a", "no_match", True),
        ),
        # thresholds switched off with None: never cascade, never no-match
        (
            [n("hours", 0.80), n("refund", 0.79)],
            {"margin": None},
            ("hours", "easy", "small", "small-a", "confident", False),
        ),
        (
            [n("hours", 0.15), n("refund", 0.1)],
            {"min_similarity": None, "margin": None},
            ("hours", "easy", "small", "small-a", "confident", False),
        ),
        # a zero threshold is a real threshold, not "unset"
        (
            [n("hours", 0.80), n("refund", 0.80)],
            {"margin": 0.0},
            ("hours", "easy", "small", "small-a", "confident", False),
        ),
        (
            [n("hours", 0.0)],
            {"min_similarity": 0.0, "margin": None},
            ("hours", "easy", "small", "small-a", "confident", False),
        ),
        # nothing retrieved at all
        ([], {}, (None, None, "flagship", "big-a", "no_match", True)),
    ],
)
def test_decide(
    neighbours: list[Neighbour], thresholds: dict[str, float | None], expected: tuple[object, ...]
) -> None:
    v = decide(neighbours, with_thresholds(**thresholds), INTENTS, input_tokens=20)
    assert (v.intent, v.difficulty, v.tier, v.model, v.reason, v.cascaded) == expected
    assert v.explanation


def test_margin_and_runner_up() -> None:
    v = decide([n("hours", 0.9), n("refund", 0.7), n("refund", 0.6)], CONFIG, INTENTS, 10)
    assert v.runner_up == "refund"
    assert v.margin == pytest.approx(0.2)
    assert v.confidence == pytest.approx(0.9)


def test_single_intent_margin_is_a_lower_bound() -> None:
    v = decide([n("hours", 0.9), n("hours", 0.7)], CONFIG, INTENTS, 10)
    assert v.runner_up is None
    assert v.margin == pytest.approx(0.2)


@pytest.mark.parametrize("aggregation", ["max", "mean_top2", "vote"])
def test_unanimous_neighbours_never_cascade_on_margin(aggregation: str) -> None:
    config = RouterConfig.model_validate(
        {
            **CONFIG.model_dump(),
            "scoring": {"top_k": 1, "aggregation": aggregation},
            "thresholds": {"margin": 0.5, "min_similarity": 0.2},
        }
    )
    v = decide([n("hours", 0.9)], config, INTENTS, 10)
    assert (v.reason, v.cascaded, v.runner_up) == ("confident", False, None)
    if aggregation == "vote":
        assert v.margin == pytest.approx(1.0)


def test_no_match_can_go_to_a_named_model_or_tier() -> None:
    to_model = RouterConfig.model_validate(
        {**CONFIG.model_dump(), "no_match": {"model": "small-b"}}
    )
    v = decide([n("hours", 0.1)], to_model, INTENTS, 10)
    assert (v.model, v.reason) == ("small-b", "no_match")
    to_tier = RouterConfig.model_validate({**CONFIG.model_dump(), "no_match": {"tier": "mid"}})
    assert decide([n("hours", 0.1)], to_tier, INTENTS, 10).model == "mid-a"


def test_cost_estimate_uses_the_chosen_model_prices() -> None:
    v = decide([n("legal", 0.9)], CONFIG, INTENTS, input_tokens=1000)
    # big-a: 1000 in at $15/M + 300 out at $60/M
    assert v.estimated_cost_usd == pytest.approx((1000 * 15 + 300 * 60) / 1e6)


def test_estimate_tokens() -> None:
    assert estimate_tokens("abcd" * 10, 4.0) == 10
    assert estimate_tokens("a", 4.0) == 1


def test_cheapest_skips_specialised_models() -> None:
    assert cheapest_in_tier(CONFIG, "mid", 100, 300).name == "mid-a"


def test_default_fallback_chain_same_tier_then_stronger_tiers() -> None:
    assert fallback_chain(CONFIG, CONFIG.model("small-a"), 100, 300) == [
        "small-b",
        "mid-a",
        "big-a",
    ]
    assert fallback_chain(CONFIG, CONFIG.model("coder"), 100, 300) == ["mid-a", "big-a"]
    assert fallback_chain(CONFIG, CONFIG.model("big-a"), 100, 300) == []


def test_explicit_fallback_chain_wins() -> None:
    config = RouterConfig.model_validate(
        {**CONFIG.model_dump(), "fallbacks": {"small-a": ["big-a"]}}
    )
    assert fallback_chain(config, config.model("small-a"), 100, 300) == ["big-a"]


@pytest.mark.parametrize(
    ("tiers", "mapping", "expected"),
    [
        (["s", "m", "f"], None, {"easy": "s", "moderate": "m", "hard": "f"}),
        (["s", "f"], None, {"easy": "s", "moderate": "f", "hard": "f"}),
        (["a", "b", "c", "d", "e"], None, {"easy": "a", "moderate": "c", "hard": "e"}),
        (["s", "m", "f"], {"moderate": "s"}, {"easy": "s", "moderate": "s", "hard": "f"}),
    ],
)
def test_tier_for_spreads_difficulties(
    tiers: list[str], mapping: dict[str, str] | None, expected: dict[str, str]
) -> None:
    config = RouterConfig(
        tiers=tiers,
        difficulty_tiers=mapping,  # type: ignore[arg-type]
        models=[
            {"name": t, "tier": t, "input_usd_per_mtok": 1, "output_usd_per_mtok": 1} for t in tiers
        ],  # type: ignore[misc]
    )
    assert {d: config.tier_for(d) for d in expected} == expected  # type: ignore[arg-type]


# --------------------------------------------------------------------------- cascade plans
# CONFIG uses aggregation max, so margins are cosine gaps; margin 0.02 sends a gap under
# 0.02 straight to the flagship, cascade_margin 0.1 plans a cascade for gaps 0.02-0.1.


@pytest.mark.parametrize(
    ("neighbours", "thresholds", "expected"),
    [
        # a moderate margin: the routed model first, the flagship named for escalation
        (
            [n("hours", 0.85), n("refund", 0.80)],
            {"cascade_margin": 0.1},
            ("small-a", "cascade", False, "big-a", "margin"),
        ),
        # the specialised model answers first too
        (
            [n("code", 0.85), n("refund", 0.80)],
            {"cascade_margin": 0.1},
            ("coder", "cascade", False, "big-a", "margin"),
        ),
        # a clear margin: no plan
        (
            [n("hours", 0.9), n("refund", 0.6)],
            {"cascade_margin": 0.1},
            ("small-a", "confident", False, None, None),
        ),
        # too close to call: straight to the flagship, no plan
        (
            [n("hours", 0.80), n("refund", 0.79)],
            {"cascade_margin": 0.1},
            ("big-a", "low_margin", True, None, None),
        ),
        # no match: straight to the no-match default, no plan
        (
            [n("hours", 0.15), n("refund", 0.1)],
            {"cascade_margin": 0.1},
            ("big-a", "no_match", True, None, None),
        ),
        # a flagship-tier route has nothing stronger to escalate to
        (
            [n("legal", 0.85), n("refund", 0.80)],
            {"cascade_margin": 0.1},
            ("big-a", "confident", False, None, None),
        ),
        # margin off: every gap below cascade_margin plans a cascade
        (
            [n("hours", 0.80), n("refund", 0.79)],
            {"margin": None, "cascade_margin": 0.1},
            ("small-a", "cascade", False, "big-a", "margin"),
        ),
        # a split difficulty vote: the harder tier is the escalation
        (
            [n("hours", 0.9), n("hours", 0.89, "moderate"), n("refund", 0.5)],
            {"cascade_harder_share": 0.4},
            ("small-a", "cascade", False, "mid-a", "difficulty"),
        ),
        (
            [n("hours", 0.9)] * 3 + [n("hours", 0.9, "hard")] * 2 + [n("hours", 0.9, "moderate")],
            {"cascade_harder_share": 0.5},
            ("small-a", "cascade", False, "big-a", "difficulty"),
        ),
        # below the share: no plan
        (
            [n("hours", 0.9), n("hours", 0.9), n("hours", 0.9, "moderate")],
            {"cascade_harder_share": 0.5},
            ("small-a", "confident", False, None, None),
        ),
        # only the best intent's neighbours vote: refund's harder votes do not count
        (
            [n("hours", 0.9), n("refund", 0.89), n("refund", 0.88)],
            {"margin": None, "cascade_harder_share": 0.3},
            ("small-a", "confident", False, None, None),
        ),
    ],
)
def test_cascade_plan(
    neighbours: list[Neighbour], thresholds: dict[str, float | None], expected: tuple[object, ...]
) -> None:
    v = decide(neighbours, with_thresholds(**thresholds), INTENTS, input_tokens=20)
    plan = v.cascade
    got = (v.model, v.reason, v.cascaded, plan and plan.escalate_to, plan and plan.trigger)
    assert got == expected
    if plan is not None:
        assert "try" in v.explanation and plan.escalate_to in v.explanation
        assert plan.tier == CONFIG.model(plan.escalate_to).tier
        assert plan.estimated_cost_usd > v.estimated_cost_usd


def test_cascade_plan_respects_health_and_budget() -> None:
    from modeltriage.core.constraints import Constraints

    config = with_thresholds(cascade_margin=0.1)
    close = [n("hours", 0.85), n("refund", 0.80)]
    # the flagship's only model is unhealthy: the plan escalates to its healthy substitute
    sick = decide(close, config, INTENTS, 20, Constraints(unhealthy=frozenset({"big-a"})))
    assert sick.cascade is not None and sick.cascade.escalate_to == "mid-a"
    # a cost budget that only small models fit: no plan, and the explanation says why
    cheap = decide(close, config, INTENTS, 20, Constraints(max_cost_usd=0.001))
    assert cheap.model == "small-a" and cheap.cascade is None
    assert cheap.reason == "confident"
    assert "no stronger healthy model fits the budget" in cheap.explanation


def test_cascade_margin_must_be_above_margin() -> None:
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match=r"cascade_margin .* must be above margin"):
        RouterConfig.model_validate(
            {**CONFIG.model_dump(), "thresholds": {"margin": 0.3, "cascade_margin": 0.3}}
        )


@pytest.mark.parametrize(
    ("difficulties", "current", "share", "expected"),
    [
        (["easy", "moderate"], "easy", 0.5, "moderate"),
        (["easy", "moderate"], "easy", 0.51, None),
        (["easy", "moderate", "hard"], "easy", 0.6, "hard"),  # tie goes to the harder
        (["hard", "hard"], "hard", 0.1, None),  # nothing harder than hard
        ([], "easy", 0.1, None),
    ],
)
def test_harder_difficulty(
    difficulties: list[str], current: str, share: float, expected: str | None
) -> None:
    from modeltriage.core.cascade import harder_difficulty

    neighbours = [n("hours", 0.9, d) for d in difficulties]
    assert harder_difficulty(neighbours, current, share) == expected  # type: ignore[arg-type]


def test_an_intent_plan_names_its_second_opinion_and_escalation() -> None:
    from modeltriage.core.intents import IntentCascade

    planned = {
        **INTENTS,
        "hours": INTENTS["hours"].model_copy(
            update={"cascade": IntentCascade(second_opinion="small-b", escalate_to="mid-a")}
        ),
    }
    v = decide([n("hours", 0.9), n("refund", 0.5)], CONFIG, planned, 20)
    assert (v.model, v.reason) == ("small-a", "cascade")
    plan = v.cascade
    assert plan is not None
    assert (plan.escalate_to, plan.tier, plan.trigger, plan.second_opinion) == (
        "mid-a",
        "mid",
        "intent",
        "small-b",
    )
    assert plan.second_opinion_cost_usd == pytest.approx((20 * 0.2 + 300 * 0.8) / 1e6)
    assert "ask small-b too" in v.explanation
    # it wins over a margin plan, and low margin still goes straight to the flagship
    moderate = decide(
        [n("hours", 0.85), n("refund", 0.8)], with_thresholds(cascade_margin=0.1), planned, 20
    )
    assert moderate.cascade is not None and moderate.cascade.trigger == "intent"
    close = decide([n("hours", 0.80), n("refund", 0.79)], CONFIG, planned, 20)
    assert (close.reason, close.cascade) == ("low_margin", None)
    # without escalate_to: the flagship; an unhealthy second opinion is dropped
    from modeltriage.core.constraints import Constraints

    default = {
        **INTENTS,
        "hours": INTENTS["hours"].model_copy(
            update={"cascade": IntentCascade(second_opinion="small-b")}
        ),
    }
    sick = decide(
        [n("hours", 0.9)], CONFIG, default, 20, Constraints(unhealthy=frozenset({"small-b"}))
    )
    assert sick.cascade is not None
    assert (sick.cascade.escalate_to, sick.cascade.second_opinion) == ("big-a", None)
    assert "small-b is marked unhealthy" in sick.explanation
