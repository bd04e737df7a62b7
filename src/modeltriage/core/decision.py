"""The one shape of a routing decision."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from modeltriage.core.config import Difficulty

Reason = Literal[
    "confident", "specialised_model", "cascade", "low_margin", "no_match", "step", "over_budget"
]


class Message(BaseModel):
    """One turn of a conversation, as chat APIs send it."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    role: Literal["system", "user", "assistant", "tool"]
    content: str


class Neighbour(BaseModel):
    """An exemplar near the request."""

    model_config = ConfigDict(frozen=True)

    intent: str
    text: str
    difficulty: Difficulty
    similarity: float


class CascadePlan(BaseModel):
    """Try the decision's model first; if its answer fails the check, call ``escalate_to``."""

    model_config = ConfigDict(frozen=True)

    escalate_to: str = Field(description="the model to call when the first answer fails")
    tier: str = Field(description="tier of escalate_to")
    trigger: Literal["margin", "difficulty", "intent"] = Field(
        description="margin: the intent match is only moderately sure; difficulty: enough "
        "neighbours voted a harder difficulty; intent: the intent's own `cascade` plan"
    )
    estimated_cost_usd: float = Field(description="extra cost when the answer is escalated")
    second_opinion: str | None = Field(
        default=None,
        description="ask this model too and pass its answer as `second_answer` to "
        "/escalate: escalate unless both agree",
    )
    second_opinion_cost_usd: float = Field(
        default=0.0,
        description="estimated cost of the second opinion and of `also_agree` (always paid)",
    )
    also_agree: list[str] = Field(
        default_factory=list,
        description="ask these models too and pass their answers, in this order, as "
        "`more_answers` to /escalate: escalate unless every answer agrees with the first",
    )


class Verdict(BaseModel):
    """What the policy decided, from the neighbours alone (no I/O, no ids, no clocks)."""

    model_config = ConfigDict(frozen=True)

    intent: str | None = Field(description="best intent; null when nothing matches")
    runner_up: str | None = Field(description="second-best intent among the neighbours")
    difficulty: Difficulty | None = Field(description="voted difficulty; null when no match")
    tier: str
    model: str
    fallbacks: list[str] = Field(description="models to try, in order, if `model` fails")
    confidence: float = Field(description="similarity of the nearest exemplar (cosine)")
    margin: float | None = Field(
        description="best intent score minus the runner-up's (or, with one intent "
        "retrieved, a lower bound); a share of the vote under aggregation vote, a cosine "
        "gap under max and mean_top2; null when no intent was scored (no match, step)"
    )
    cascaded: bool = Field(
        description="true when uncertainty already sent the request to a stronger model "
        "than its match would get: reason `low_margin` (straight to the flagship) or "
        "`no_match` (the no-match default); false otherwise, including with a `cascade` "
        "plan, where the routed model answers first and escalation is only planned"
    )
    cascade: CascadePlan | None = Field(
        default=None,
        description="a plan, set with reason `cascade` (and `cascaded` false): `model` "
        "answers first, and its answer is checked (POST /escalate) before escalating to "
        "`cascade.escalate_to`; null: use the model's answer as it is",
    )
    reason: Reason
    explanation: str
    estimated_cost_usd: float = Field(description="from the model's prices and a token estimate")
    input_tokens: int = Field(description="estimated input tokens behind the cost estimate")


class Decision(Verdict):
    id: str
    index_version: str = Field(description="short hash of the indexed exemplars")
    latency_ms: float
    neighbours: list[Neighbour] = Field(
        default_factory=list, description="nearest exemplars; filled when explain=true"
    )
