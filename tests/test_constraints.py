"""Table tests of failover, health, budgets and pipeline steps in the pure policy."""

from __future__ import annotations

import pytest
import yaml

from modeltriage.core.config import RouterConfig
from modeltriage.core.constraints import Constraints, substitutes
from modeltriage.core.conversation import conversation_text
from modeltriage.core.decision import Message, Neighbour
from modeltriage.core.failover import next_model
from modeltriage.core.policy import decide

from .conftest import ROUTER_YAML
from .test_policy import INTENTS, n

# The fake config with latencies (mid-a's left unknown) and pipeline steps.
LATENCIES = {"small-a": 300, "small-b": 200, "coder": 500, "big-a": 3000}
_RAW = yaml.safe_load(ROUTER_YAML)
CONFIG = RouterConfig.model_validate(
    {
        **_RAW,
        "models": [
            {**m, "typical_latency_ms": LATENCIES[m["name"]]} if m["name"] in LATENCIES else m
            for m in _RAW["models"]
        ],
        "steps": {
            "query_rewrite": {"tier": "small"},
            "synthesis": {"intent": "legal"},
            "tool_planning": {"intent": "code"},
        },
    }
)

EASY = [n("hours", 0.9), n("refund", 0.5)]  # -> small-a
MODERATE = [n("refund", 0.8), n("hours", 0.6)]  # -> mid-a
HARD = [n("legal", 0.9), n("refund", 0.5)]  # -> big-a
LOW_MARGIN = [n("hours", 0.80), n("refund", 0.79)]  # -> big-a, cascaded


def route(neighbours: list[Neighbour], **constraints: object) -> tuple[object, ...]:
    v = decide(neighbours, CONFIG, INTENTS, 20, Constraints(**constraints))  # type: ignore[arg-type]
    return v.model, v.reason, v.fallbacks


@pytest.mark.parametrize(
    ("neighbours", "unhealthy", "expected"),
    [
        (EASY, set(), ("small-a", "confident", ["small-b", "mid-a", "big-a"])),
        # the next cheapest healthy model of the same tier, dropped from the fallbacks
        (EASY, {"small-a"}, ("small-b", "confident", ["mid-a", "big-a"])),
        # none left in the tier: the next tier up
        (EASY, {"small-a", "small-b"}, ("mid-a", "confident", ["big-a"])),
        (EASY, {"mid-a"}, ("small-a", "confident", ["small-b", "big-a"])),
        # the flagship down: nothing stronger, so the nearest cheaper tier
        (HARD, {"big-a"}, ("mid-a", "confident", [])),
        (LOW_MARGIN, {"big-a"}, ("mid-a", "low_margin", [])),
        # every model unhealthy: health is ignored rather than refusing to route
        (
            EASY,
            {"small-a", "small-b", "mid-a", "coder", "big-a"},
            ("small-a", "confident", ["small-b", "mid-a", "big-a"]),
        ),
    ],
)
def test_unhealthy_models_are_skipped(
    neighbours: list[Neighbour], unhealthy: set[str], expected: tuple[object, ...]
) -> None:
    assert route(neighbours, unhealthy=frozenset(unhealthy)) == expected


def test_explanation_says_a_model_was_skipped() -> None:
    v = decide(EASY, CONFIG, INTENTS, 20, Constraints(unhealthy=frozenset({"small-a"})))
    assert "small-a is marked unhealthy" in v.explanation
    assert "using small-b (small) instead" in v.explanation


@pytest.mark.parametrize(
    ("neighbours", "budgets", "expected"),
    [
        # within budget: nothing changes
        (EASY, {"max_latency_ms": 300}, ("small-a", "confident", ["small-b"])),
        # small-a too slow: small-b; unknown-latency mid-a is not eligible
        (EASY, {"max_latency_ms": 250}, ("small-b", "confident", [])),
        # mid-a's latency is unknown: ineligible, a stronger tier first, then cheaper
        (MODERATE, {"max_latency_ms": 5000}, ("big-a", "confident", [])),
        (MODERATE, {"max_latency_ms": 1000}, ("small-a", "confident", ["small-b"])),
        # nothing fits: over_budget, the closest model, fallbacks kept
        (EASY, {"max_latency_ms": 100}, ("small-b", "over_budget", ["small-a", "mid-a", "big-a"])),
        # cost: big-a costs 0.0183 for 20 tokens in and 300 out, mid-a 0.00244
        (HARD, {"max_cost_usd": 0.01}, ("mid-a", "confident", [])),
        (HARD, {"max_cost_usd": 0.001}, ("small-a", "confident", ["small-b"])),
        (HARD, {"max_cost_usd": 0.0001}, ("small-a", "over_budget", ["small-b", "mid-a", "big-a"])),
        # both budgets at once
        (
            HARD,
            {"max_cost_usd": 0.01, "max_latency_ms": 400},
            ("small-a", "confident", ["small-b"]),
        ),
    ],
)
def test_budgets(
    neighbours: list[Neighbour], budgets: dict[str, float], expected: tuple[object, ...]
) -> None:
    assert route(neighbours, **budgets) == expected


def test_over_budget_explanation_names_the_budget() -> None:
    v = decide(EASY, CONFIG, INTENTS, 20, Constraints(max_latency_ms=100))
    assert "budget: no healthy model fits (max_latency_ms 100)" in v.explanation
    v = decide(MODERATE, CONFIG, INTENTS, 20, Constraints(max_latency_ms=5000))
    assert "mid-a has no typical_latency_ms (unknown latency)" in v.explanation


def test_health_and_budget_together() -> None:
    assert route(EASY, max_latency_ms=350, unhealthy=frozenset({"small-b"})) == (
        "small-a",
        "confident",
        [],
    )


def test_substitution_order_same_tier_then_stronger_then_cheaper() -> None:
    names = [m.name for m in substitutes(CONFIG, CONFIG.model("mid-a"), 20, 300)]
    assert names == ["mid-a", "big-a", "small-a", "small-b"]
    names = [m.name for m in substitutes(CONFIG, CONFIG.model("coder"), 20, 300)]
    assert names == ["coder", "mid-a", "big-a", "small-a", "small-b"]


@pytest.mark.parametrize(
    ("chain", "failed", "unhealthy", "expected"),
    [
        (["a", "b", "c"], {"a"}, set(), "b"),
        (["a", "b", "c"], {"a", "b"}, set(), "c"),
        (["a", "b", "c"], {"c"}, set(), None),
        # models before the last failed one were already tried
        (["a", "b", "c"], {"b"}, set(), "c"),
        (["a", "b", "c"], {"a"}, {"b"}, "c"),
        (["a", "b", "c"], {"a"}, {"b", "c"}, None),
        # a failed model outside the chain: start from the chain's beginning
        (["a", "b"], {"z"}, set(), "a"),
        (["a"], {"a"}, set(), None),
    ],
)
def test_next_model(
    chain: list[str], failed: set[str], unhealthy: set[str], expected: str | None
) -> None:
    result = next_model(chain, failed, unhealthy)
    assert result.model == expected
    assert result.reason


def test_next_model_reason_mentions_skipped_unhealthy() -> None:
    assert "skipped unhealthy b" in next_model(["a", "b", "c"], {"a"}, {"b"}).reason


@pytest.mark.parametrize(
    ("step", "neighbours", "expected"),
    [
        # a tier: exemplars ignored, even a no-match request
        ("query_rewrite", HARD, (None, None, "small-a", "step")),
        ("query_rewrite", [], (None, None, "small-a", "step")),
        # an intent: its difficulty and tier
        ("synthesis", EASY, ("legal", "hard", "big-a", "step")),
        # an intent with a specialised model
        ("tool_planning", EASY, ("code", "hard", "coder", "step")),
    ],
)
def test_steps(step: str, neighbours: list[Neighbour], expected: tuple[object, ...]) -> None:
    v = decide(neighbours, CONFIG, INTENTS, 20, Constraints(step=step))
    assert (v.intent, v.difficulty, v.model, v.reason) == expected
    assert f"step {step!r}" in v.explanation
    assert v.cascaded is False


def test_step_with_a_budget() -> None:
    v = decide(EASY, CONFIG, INTENTS, 20, Constraints(step="synthesis", max_cost_usd=0.001))
    assert (v.model, v.reason) == ("small-a", "step")


def test_unknown_step_in_the_policy_is_a_value_error() -> None:
    with pytest.raises(ValueError, match="unknown step"):
        decide(EASY, CONFIG, INTENTS, 20, Constraints(step="nope"))


# --- multi-turn: the text a conversation is routed by -----------------------------------


def msgs(*turns: tuple[str, str]) -> list[Message]:
    return [Message(role=role, content=content) for role, content in turns]  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("messages", "expected"),
    [
        (msgs(("user", "where is my parcel")), "where is my parcel"),
        # a short last turn is read with the previous user turn
        (
            msgs(
                ("user", "do you have the jacket in blue"),
                ("assistant", "Yes."),
                ("user", "and in red?"),
            ),
            "do you have the jacket in blue and in red?",
        ),
        # a long enough last turn stands alone
        (
            msgs(("user", "hello there"), ("user", "what are your opening hours")),
            "what are your opening hours",
        ),
        # a short first turn has nothing before it; system and assistant turns never count
        (msgs(("system", "be nice"), ("user", "hi")), "hi"),
        (msgs(("assistant", "How can I help?"), ("user", "  ")), None),
        ([], None),
    ],
)
def test_conversation_text(messages: list[Message], expected: str | None) -> None:
    assert conversation_text(messages, short_turn_words=4) == expected


@pytest.mark.parametrize(
    ("neighbours", "min_tier", "expected"),
    [
        (EASY, "mid", ("mid-a", "confident", ["big-a"])),
        (EASY, "small", ("small-a", "confident", ["small-b", "mid-a", "big-a"])),
        # never lowers a stronger choice
        (HARD, "mid", ("big-a", "confident", [])),
        # a specialised model at min_tier stays
        (
            [n("code", 0.8), n("hours", 0.6)],
            "mid",
            ("coder", "specialised_model", ["mid-a", "big-a"]),
        ),
    ],
)
def test_min_tier_keeps_a_conversation_up(
    neighbours: list[Neighbour], min_tier: str, expected: tuple[object, ...]
) -> None:
    assert route(neighbours, min_tier=min_tier) == expected
