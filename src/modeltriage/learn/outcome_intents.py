"""Intents learned from labelled outcomes: `modeltriage learn`.

Each prompt becomes an exemplar whose difficulty is learned from evidence (the cheapest
tier whose model answered it well); prompts are grouped into intents by task or by
cluster; prices are fitted from the observed costs; the result is written as an intents
directory the router loads.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import yaml

from modeltriage.core.config import (
    DIFFICULTIES,
    ROUTER_CONFIG_FILE,
    Difficulty,
    RouterConfig,
    Scoring,
)
from modeltriage.core.costs import estimate_tokens
from modeltriage.core.encoders import Encoder
from modeltriage.core.intents import Exemplar, Intent
from modeltriage.errors import InputError
from modeltriage.learn.outcome_data import OutcomeRow

GroupBy = Literal["task", "cluster"]


def parse_tiers(spec: str) -> list[tuple[str, str]]:
    """``small=MODEL,mid=MODEL,flagship=MODEL`` -> [(tier, model)], cheapest first."""
    pairs = []
    for part in spec.split(","):
        tier, sep, model = part.partition("=")
        if not sep or not tier.strip() or not model.strip():
            raise InputError(f"--tiers: expected TIER=MODEL, got {part!r}")
        pairs.append((tier.strip(), model.strip()))
    if not 2 <= len(pairs) <= 3:
        raise InputError("--tiers: give two or three tiers, cheapest first")
    if len({t for t, _ in pairs}) != len(pairs) or len({m for _, m in pairs}) != len(pairs):
        raise InputError("--tiers: tier names and models must be distinct")
    return pairs


def tier_difficulties(tiers: Sequence[tuple[str, str]]) -> list[Difficulty]:
    """The difficulty that lands on each tier: easy/moderate/hard, or easy/hard for two."""
    return list(DIFFICULTIES) if len(tiers) == 3 else ["easy", "hard"]


def learned_difficulty(
    row: OutcomeRow, tiers: Sequence[tuple[str, str]], good: float
) -> Difficulty | None:
    """Difficulty = the cheapest tier whose model answered well; "hard" when none did
    (the flagship is still the best bet). None when a tier's model has no outcome."""
    if any(model not in row.outcomes for _, model in tiers):
        return None
    for (_, model), difficulty in zip(tiers, tier_difficulties(tiers), strict=True):
        if row.outcomes[model].quality >= good:
            return difficulty
    return "hard"


_NAME = re.compile(r"[^A-Za-z0-9_.-]+")


def intent_name(task: str | None) -> str:
    name = _NAME.sub("_", task or "general").strip("_.-")
    return name or "general"


def learn_intents(
    rows: Sequence[OutcomeRow],
    tiers: Sequence[tuple[str, str]],
    *,
    good: float = 0.5,
    groups: Sequence[str] | None = None,
) -> tuple[tuple[Intent, ...], int]:
    """Intents grouped by task (or by ``groups``, one name per row, e.g. clusters), one
    exemplar per prompt with its learned difficulty. Returns the intents and how many
    rows were skipped (a tier model without outcome, or a prompt repeated in its group)."""
    if groups is not None and len(groups) != len(rows):
        raise ValueError("need one group name per row")
    grouped: dict[str, dict[str, Difficulty]] = {}
    skipped = 0
    for i, row in enumerate(rows):
        difficulty = learned_difficulty(row, tiers, good)
        name = intent_name(row.task if groups is None else groups[i])
        texts = grouped.setdefault(name, {})
        key = row.text.strip().casefold()
        if difficulty is None or not row.text.strip() or key in texts:
            skipped += 1
            continue
        texts[key] = difficulty
    originals = {row.text.strip().casefold(): row.text.strip() for row in rows}
    intents = []
    for name in sorted(grouped):
        if not grouped[name]:
            continue
        counts = Counter(grouped[name].values())
        default = max(DIFFICULTIES, key=lambda d: (counts[d], DIFFICULTIES.index(d)))
        intents.append(
            Intent(
                name=name,
                description=f"learned from labelled outcomes ({len(grouped[name])} prompts)",
                difficulty=default,
                exemplars=[
                    Exemplar(text=originals[k], difficulty=None if d == default else d)
                    for k, d in grouped[name].items()
                ],
            )
        )
    if not intents:
        raise InputError("no row has outcomes for every --tiers model")
    return tuple(intents), skipped


def learned_config(
    rows: Sequence[OutcomeRow],
    tiers: Sequence[tuple[str, str]],
    *,
    chars_per_token: float = 4.0,
    output_tokens: int = 50,
    extra_models: Sequence[str] = (),
) -> RouterConfig:
    """A router config for the tier models. Prices are fitted from the observed costs
    (one $/token rate per model), so the router's estimates track the real bills;
    thresholds start open, for `tune` to set, and no out-of-scope floor is calibrated.
    ``extra_models`` (named by intents, e.g. in cascade plans) join the cheapest tier as
    specialised models."""
    models = []
    named = {m for _, m in tiers}
    extra = [(tiers[0][0], m) for m in dict.fromkeys(extra_models) if m not in named]
    for tier, model in [*tiers, *extra]:
        spent = sum(r.outcomes[model].cost_usd for r in rows if model in r.outcomes)
        tokens = sum(
            estimate_tokens(r.text, chars_per_token) + output_tokens
            for r in rows
            if model in r.outcomes
        )
        rate = 0.0 if tokens == 0 else round(spent / tokens * 1_000_000, 6)
        models.append(
            {
                "name": model,
                "tier": tier,
                "input_usd_per_mtok": rate,
                "output_usd_per_mtok": rate,
                "specialised": model not in named,
            }
        )
    return RouterConfig.model_validate(
        {
            "tiers": [t for t, _ in tiers],
            "difficulty_tiers": {
                "easy": tiers[0][0],
                "moderate": tiers[1][0],
                "hard": tiers[-1][0],
            },
            "models": models,
            "thresholds": {"margin": None, "min_similarity": None},
            # Open like min_similarity: every request here has a plan to route by.
            "out_of_scope": {"calibrate": False},
            "scoring": {"top_k": 20, "aggregation": "vote", "long_text": "tail"},
            "cost": {"chars_per_token": chars_per_token, "expected_output_tokens": output_tokens},
            "log": {"url": None},
        }
    )


def _dump(data: Any) -> str:
    return yaml.safe_dump(data, sort_keys=False, allow_unicode=True, width=100)


def write_intents_dir(
    directory: Path, config: RouterConfig, intents: Sequence[Intent], header: str
) -> None:
    """Write router.yaml and one file per intent; refuses to overwrite intent files."""
    directory.mkdir(parents=True, exist_ok=True)
    clashes = [i.name for i in intents if (directory / f"{i.name}.yaml").exists()]
    if clashes or (directory / ROUTER_CONFIG_FILE).exists():
        raise InputError(
            f"{directory} already holds intents ({', '.join(clashes) or ROUTER_CONFIG_FILE}); "
            "choose an empty --out directory"
        )
    comment = "".join(f"# {line}\n" for line in header.splitlines())
    config_data = config.model_dump(mode="json", exclude_defaults=True)
    # Written out even at their defaults: the thresholds are what `tune` will change.
    config_data["thresholds"] = config.thresholds.model_dump(mode="json")
    (directory / ROUTER_CONFIG_FILE).write_text(comment + _dump(config_data), encoding="utf-8")
    for intent in intents:
        data = intent.model_dump(mode="json", exclude_defaults=True)
        data["exemplars"] = [e["text"] if set(e) == {"text"} else e for e in data["exemplars"]]
        (directory / f"{intent.name}.yaml").write_text(comment + _dump(data), encoding="utf-8")


def needs_clustering(rows: Sequence[OutcomeRow], group_by: GroupBy) -> bool:
    """Whether grouping ``rows`` into intents takes clustering (and so an encoder)."""
    return group_by == "cluster" or not all(r.task for r in rows)


def group_names(
    rows: Sequence[OutcomeRow],
    encoder: Encoder,
    scoring: Scoring,
    group_by: GroupBy = "task",
    clusters: int | None = None,
    seed: int = 0,
) -> list[str] | None:
    """Intent names for :func:`learn_intents`: None to group by task when every row has
    one; else clusters of the rows without a task (all rows with ``group_by="cluster"``),
    embedded through the router's scoring view."""
    from modeltriage.learn.clustering import cluster_names

    if not needs_clustering(rows, group_by):
        return None
    todo = [i for i, r in enumerate(rows) if group_by == "cluster" or not r.task]
    names = cluster_names([scoring.view(rows[i].text) for i in todo], encoder, clusters, seed=seed)
    out = [r.task or "" for r in rows]
    for i, name in zip(todo, names, strict=True):
        out[i] = name
    return out
