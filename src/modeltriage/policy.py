"""Pure routing policy: neighbours + router config -> verdict. No I/O, no clocks.

Every function here is deterministic in its arguments so it can be table-tested.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from .config import DIFFICULTIES, Aggregation, Difficulty, Intent, ModelSpec, RouterConfig
from .decision import Neighbour, Verdict

# Temperature of the similarity-weighted vote: cosine gaps between intents are a few
# hundredths, so a small temperature keeps the nearest exemplars dominant.
VOTE_TEMPERATURE = 0.05


@dataclass(frozen=True)
class IntentScore:
    intent: str
    score: float


def score_intents(neighbours: Sequence[Neighbour], aggregation: Aggregation) -> list[IntentScore]:
    """Score each intent present among ``neighbours``, best first (ties by name)."""
    by_intent: dict[str, list[float]] = {}
    for n in neighbours:
        by_intent.setdefault(n.intent, []).append(n.similarity)
    if not by_intent:
        return []
    floor = min(n.similarity for n in neighbours)
    scores: dict[str, float] = {}
    if aggregation == "max":
        scores = {intent: max(sims) for intent, sims in by_intent.items()}
    elif aggregation == "mean_top2":
        # An intent with one neighbour in the top k has its second below the k-th
        # similarity; the k-th stands in for it, an upper bound.
        for intent, sims in by_intent.items():
            top = sorted(sims, reverse=True)[:2]
            scores[intent] = (top[0] + (top[1] if len(top) > 1 else floor)) / 2
    elif aggregation == "vote":
        best = max(n.similarity for n in neighbours)
        weights = {
            intent: sum(math.exp((s - best) / VOTE_TEMPERATURE) for s in sims)
            for intent, sims in by_intent.items()
        }
        total = sum(weights.values())
        scores = {intent: w / total for intent, w in weights.items()}
    else:  # pragma: no cover - pydantic restricts the literal
        raise ValueError(f"unknown aggregation {aggregation!r}")
    return sorted(
        (IntentScore(i, s) for i, s in scores.items()), key=lambda x: (-x.score, x.intent)
    )


def runner_up_floor(neighbours: Sequence[Neighbour], aggregation: Aggregation) -> float:
    """Score of an intent absent from the neighbours, at most: used when only one
    intent was retrieved, so the margin is a lower bound rather than undefined."""
    if aggregation == "vote":
        return 0.0
    return min(n.similarity for n in neighbours)


def difficulty_shares(neighbours: Sequence[Neighbour]) -> dict[Difficulty, float]:
    """Share of the vote per difficulty, weighted like the intent vote so the nearest
    exemplars dominate: one close "easy" override outweighs many distant "hard" ones."""
    if not neighbours:
        raise ValueError("cannot vote a difficulty without neighbours")
    weights = dict.fromkeys(DIFFICULTIES, 0.0)
    best = max(n.similarity for n in neighbours)
    for n in neighbours:
        weights[n.difficulty] += math.exp((n.similarity - best) / VOTE_TEMPERATURE)
    total = sum(weights.values())
    return {d: w / total for d, w in weights.items()}


def vote_difficulty(neighbours: Sequence[Neighbour], confidence: float | None = None) -> Difficulty:
    """The voted difficulty. Without ``confidence``: the most voted, a tie going to the
    harder. With it: the easiest difficulty whose cumulative share (easy, then easy and
    moderate) reaches ``confidence`` -- raising it sends doubtful requests up a tier."""
    shares = difficulty_shares(neighbours)
    if confidence is None:
        return max(DIFFICULTIES, key=lambda d: (shares[d], DIFFICULTIES.index(d)))
    cumulative = 0.0
    for difficulty in DIFFICULTIES:
        cumulative += shares[difficulty]
        # A hair of tolerance so that confidence 1.0 is reachable despite rounding.
        if cumulative >= confidence - 1e-9:
            return difficulty
    return DIFFICULTIES[-1]


def estimate_tokens(text: str, chars_per_token: float) -> int:
    return max(1, math.ceil(len(text) / chars_per_token))


def model_cost(spec: ModelSpec, input_tokens: int, output_tokens: int) -> float:
    return (
        input_tokens * spec.input_usd_per_mtok + output_tokens * spec.output_usd_per_mtok
    ) / 1_000_000


def _by_cost(models: Sequence[ModelSpec], input_tokens: int, output_tokens: int) -> list[ModelSpec]:
    # sorted() is stable, so equal prices keep the config's order.
    return sorted(models, key=lambda m: model_cost(m, input_tokens, output_tokens))


def cheapest_in_tier(
    config: RouterConfig, tier: str, input_tokens: int, output_tokens: int
) -> ModelSpec:
    general = [m for m in config.models if m.tier == tier and not m.specialised]
    return _by_cost(general, input_tokens, output_tokens)[0]


def fallback_chain(
    config: RouterConfig, model: ModelSpec, input_tokens: int, output_tokens: int
) -> list[str]:
    """Explicit chain from the config, else: the same tier's other general models by
    cost, then the cheapest general model of each stronger tier."""
    if model.name in config.fallbacks:
        return list(config.fallbacks[model.name])
    same_tier = [
        m for m in config.models if m.tier == model.tier and not m.specialised and m != model
    ]
    chain = [m.name for m in _by_cost(same_tier, input_tokens, output_tokens)]
    for tier in config.tiers[config.tiers.index(model.tier) + 1 :]:
        chain.append(cheapest_in_tier(config, tier, input_tokens, output_tokens).name)
    return chain


def decide(
    neighbours: Sequence[Neighbour],
    config: RouterConfig,
    intents: Mapping[str, Intent],
    input_tokens: int,
) -> Verdict:
    """Turn the nearest exemplars into a verdict.

    Order of checks: no match (top similarity below the floor), then low margin
    (best intent barely ahead of the runner-up), then the intent's own route.
    """
    output_tokens = config.cost.expected_output_tokens
    thresholds = config.thresholds
    aggregation = config.scoring.aggregation
    confidence = max((n.similarity for n in neighbours), default=-1.0)

    def verdict(model: ModelSpec, reason: str, explanation: str, **fields: object) -> Verdict:
        return Verdict.model_validate(
            {
                "tier": model.tier,
                "model": model.name,
                "fallbacks": fallback_chain(config, model, input_tokens, output_tokens),
                "confidence": round(confidence, 6),
                "reason": reason,
                "explanation": explanation,
                "estimated_cost_usd": model_cost(model, input_tokens, output_tokens),
                "input_tokens": input_tokens,
                **fields,
            }
        )

    no_match = not neighbours or (
        thresholds.min_similarity is not None and confidence < thresholds.min_similarity
    )
    if no_match:
        if config.no_match.model is not None:
            target = config.model(config.no_match.model)
        else:
            tier = config.flagship_tier if config.no_match.tier is None else config.no_match.tier
            target = cheapest_in_tier(config, tier, input_tokens, output_tokens)
        floor = thresholds.min_similarity
        why = (
            "no exemplars to compare with"
            if not neighbours
            else f"top similarity {confidence:.3f} < min_similarity {floor}"
        )
        return verdict(
            target,
            "no_match",
            f"{why}: no intent matches; sent to the no-match default {target.name} ({target.tier})",
            intent=None,
            runner_up=None,
            difficulty=None,
            margin=None,
            cascaded=True,
        )

    ranked = score_intents(neighbours, aggregation)
    best = ranked[0]
    runner_up = ranked[1] if len(ranked) > 1 else None
    second = runner_up.score if runner_up is not None else runner_up_floor(neighbours, aggregation)
    margin = best.score - second
    intent = intents[best.intent]
    difficulty = vote_difficulty(
        [n for n in neighbours if n.intent == best.intent], thresholds.difficulty_confidence
    )
    matched = f"intent {best.intent!r} (score {best.score:.3f}, margin {margin:.3f} over " + (
        f"{runner_up.intent!r})" if runner_up is not None else "any other intent)"
    )
    common = {
        "intent": best.intent,
        "runner_up": None if runner_up is None else runner_up.intent,
        "difficulty": difficulty,
        "margin": round(margin, 6),
    }

    # Unanimous neighbours never cascade on margin: with no runner-up retrieved, the
    # margin is only a lower bound (zero with top_k 1), not evidence of a close call.
    if thresholds.margin is not None and runner_up is not None and margin < thresholds.margin:
        target = cheapest_in_tier(config, config.flagship_tier, input_tokens, output_tokens)
        return verdict(
            target,
            "low_margin",
            f"{matched} is below margin {thresholds.margin}: too close to call, "
            f"cascaded to flagship {target.name}",
            cascaded=True,
            **common,
        )

    # The specialised model serves the intent's own difficulty; an exemplar override
    # that wins the vote (say, a trivial coding question) routes by tier instead.
    if intent.model is not None and difficulty == intent.difficulty:
        target = config.model(intent.model)
        return verdict(
            target,
            "specialised_model",
            f"matched {matched}; the intent names specialised model {target.name}",
            cascaded=False,
            **common,
        )

    tier = config.tier_for(difficulty)
    target = cheapest_in_tier(config, tier, input_tokens, output_tokens)
    return verdict(
        target,
        "confident",
        f"matched {matched}; difficulty {difficulty} -> tier {tier} -> "
        f"cheapest model {target.name}",
        cascaded=False,
        **common,
    )
