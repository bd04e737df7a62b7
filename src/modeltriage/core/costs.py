"""What a request costs: token estimates, model prices, the cheapest model of a tier, the
default fallback chain, and the always-flagship baseline savings are measured against."""

from __future__ import annotations

import math
from collections.abc import Sequence

from modeltriage.core.config import ModelSpec, RouterConfig


def estimate_tokens(text: str, chars_per_token: float) -> int:
    return max(1, math.ceil(len(text) / chars_per_token))


def model_cost(spec: ModelSpec, input_tokens: int, output_tokens: int) -> float:
    return (
        input_tokens * spec.input_usd_per_mtok + output_tokens * spec.output_usd_per_mtok
    ) / 1_000_000


def flagship_cost_usd(config: RouterConfig, input_tokens: int) -> float:
    """What always-flagship pays for one request: the flagship tier's cheapest general
    model, with ``cost.expected_output_tokens`` of output. The baseline every saving is
    measured against."""
    output = config.cost.expected_output_tokens
    spec = cheapest_in_tier(config, config.flagship_tier, input_tokens, output)
    return model_cost(spec, input_tokens, output)


def savings(cost: float, baseline: float) -> float:
    """The share of ``baseline`` not spent: ``1 - cost / baseline``; 0.0 when the
    baseline costs nothing."""
    return 1 - cost / baseline if baseline > 0 else 0.0


def by_cost(models: Sequence[ModelSpec], input_tokens: int, output_tokens: int) -> list[ModelSpec]:
    """``models``, cheapest first for this request's token counts."""
    # sorted() is stable, so equal prices keep the config's order.
    return sorted(models, key=lambda m: model_cost(m, input_tokens, output_tokens))


def cheapest_in_tier(
    config: RouterConfig, tier: str, input_tokens: int, output_tokens: int
) -> ModelSpec:
    general = [m for m in config.models if m.tier == tier and not m.specialised]
    return by_cost(general, input_tokens, output_tokens)[0]


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
    chain = [m.name for m in by_cost(same_tier, input_tokens, output_tokens)]
    for tier in config.tiers[config.tiers.index(model.tier) + 1 :]:
        chain.append(cheapest_in_tier(config, tier, input_tokens, output_tokens).name)
    return chain
