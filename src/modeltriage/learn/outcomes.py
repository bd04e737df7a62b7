"""Labelled outcomes (``*.outcomes.jsonl``): per-prompt quality and cost of several LLMs.

Two uses: ``learn`` turns outcomes into intents whose exemplars carry a difficulty
learned from evidence (the cheapest tier whose model answered well), and evaluation
scores a router's choices by the chosen model's real quality and cost.
"""

from __future__ import annotations

import ast
import json
import math
import re
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from itertools import pairwise
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
from modeltriage.core.intents import Exemplar, Intent, IntentSet
from modeltriage.errors import ConfigError, InputError, MissingDependencyError
from modeltriage.learn.tuning import Case, Point, QualityModel, format_threshold, sweep
from modeltriage.router import Router

GroupBy = Literal["task", "cluster"]


@dataclass(frozen=True)
class Outcome:
    quality: float
    cost_usd: float


@dataclass(frozen=True)
class OutcomeRow:
    id: str
    text: str
    task: str | None
    outcomes: Mapping[str, Outcome]
    # Each model's answer, when the file has them: what an answer-time check compares.
    responses: Mapping[str, str] = field(default_factory=dict)


def unwrap_response(response: str) -> str:
    """The answer itself: RouterBench stores each response as the repr of a one-element
    Python list ("['B\\n']"); anything else is returned as it is."""
    text = response.strip()
    if not (text.startswith("[") and text.endswith("]")):
        return response
    try:
        value = ast.literal_eval(text)
    except (ValueError, SyntaxError, MemoryError, RecursionError):
        return response
    if isinstance(value, list) and len(value) == 1 and isinstance(value[0], str):
        return value[0]
    return response


def read_outcomes_jsonl(path: Path | str) -> list[OutcomeRow]:
    """Read outcomes, naming the file and line of a malformed row. A model whose cost is
    null is left out of that row (it cannot be priced)."""
    source = Path(path)
    try:
        handle = source.open(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot read file: {exc.strerror}", source) from None
    rows: list[OutcomeRow] = []
    with handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                data = json.loads(line)
                text = data["text"]
                raw = data["outcomes"]
                if not isinstance(text, str) or not isinstance(raw, dict):
                    raise TypeError("text must be a string and outcomes an object")
                outcomes = {
                    model: Outcome(float(o["quality"]), float(o["cost_usd"]))
                    for model, o in raw.items()
                    if o.get("cost_usd") is not None
                }
            except (json.JSONDecodeError, KeyError, TypeError, ValueError, AttributeError) as exc:
                raise ConfigError(f"not an outcomes row: {exc}", source, number) from None
            task = data.get("task")
            raw_responses = data.get("responses")
            responses = (
                {m: unwrap_response(r) for m, r in raw_responses.items() if isinstance(r, str)}
                if isinstance(raw_responses, dict)
                else {}
            )
            rows.append(
                OutcomeRow(
                    str(data.get("id", number)),
                    text,
                    task if isinstance(task, str) else None,
                    outcomes,
                    responses,
                )
            )
    if not rows:
        raise ConfigError("no rows", source)
    return rows


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
    thresholds start open, for `tune` to set. ``extra_models`` (named by intents, e.g.
    in cascade plans) join the cheapest tier as specialised models."""
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


def oracle(row: OutcomeRow, good: float) -> tuple[float, float]:
    """Quality and cost of the cheapest model that answered well (else the best one)."""
    right = [o for o in row.outcomes.values() if o.quality >= good]
    if right:
        best = min(right, key=lambda o: o.cost_usd)
    else:
        best = max(row.outcomes.values(), key=lambda o: (o.quality, -o.cost_usd))
    return best.quality, best.cost_usd


def apgr(points: Sequence[tuple[float, float]], weak: float, strong: float) -> float:
    """RouteLLM's average performance gap recovered: the area under quality-gap
    recovered against the share of calls to the strong model, from (0, weak) to
    (1, strong), over the upper envelope of the router's points."""
    if math.isclose(strong, weak):
        return float("nan")
    pts = sorted([(0.0, weak), *points, (1.0, strong)])
    envelope: list[tuple[float, float]] = []
    for share, quality in pts:
        if envelope and quality <= envelope[-1][1]:
            continue
        envelope.append((share, quality))
    if envelope[-1][0] < 1.0:
        envelope.append((1.0, envelope[-1][1]))
    area = 0.0
    for (x0, y0), (x1, y1) in pairwise(envelope):
        area += (x1 - x0) * ((y0 - weak) + (y1 - weak)) / 2
    return area / (strong - weak)


def calls_for_gap(
    points: Sequence[tuple[float, float]], weak: float, strong: float, share: float
) -> float | None:
    """Least share of strong-model calls among points recovering ``share`` of the gap."""
    if math.isclose(strong, weak):
        return None
    eligible = [s for s, q in points if (q - weak) / (strong - weak) >= share]
    return min(eligible) if eligible else None


@dataclass(frozen=True)
class Baseline:
    name: str
    quality: float
    cost_usd: float
    flagship_share: float | None  # None for the oracle, which picks from every model


@dataclass(frozen=True)
class OutcomesReport:
    test_rows: int
    skipped_rows: int
    flagship: str
    tiers: list[tuple[str, str]]
    long_text: str
    baselines: list[Baseline]
    curve: list[Point]
    savings_at: dict[str, float | None]
    apgr: float
    calls_for_50: float | None
    calls_for_80: float | None


CONFIDENCE_GRID: tuple[float | None, ...] = (
    None,
    *(round(0.05 * i, 2) for i in range(1, 21)),
)


def outcome_cases(
    router: Router, rows: Sequence[OutcomeRow], batch: int | None = None
) -> list[Case]:
    """Route every row once (neighbours kept) and attach its real qualities and costs."""
    size = router.config.limits.max_batch if batch is None else batch
    cases: list[Case] = []
    for start in range(0, len(rows), size):
        chunk = rows[start : start + size]
        decisions = router.route_batch([r.text for r in chunk], explain=True)
        for row, decision in zip(chunk, decisions, strict=True):
            cases.append(
                Case(
                    neighbours=tuple(decision.neighbours),
                    input_tokens=decision.input_tokens,
                    measured={m: o.quality for m, o in row.outcomes.items()},
                    costs={m: o.cost_usd for m, o in row.outcomes.items()},
                )
            )
    return cases


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


def evaluate_outcomes(
    train: Sequence[OutcomeRow],
    test: Sequence[OutcomeRow],
    tiers: Sequence[tuple[str, str]],
    encoder: Encoder,
    *,
    good: float = 0.5,
    long_text: str = "tail",
    group_by: GroupBy = "task",
    clusters: int | None = None,
    seed: int = 0,
) -> OutcomesReport:
    """Learn from ``train``, route ``test``, sweep difficulty_confidence, and score every
    choice by the chosen model's real quality and cost, beside the baselines."""
    config = learned_config(train, tiers)
    config = config.model_copy(
        update={"scoring": config.scoring.model_copy(update={"long_text": long_text})}
    )
    groups = group_names(train, encoder, config.scoring, group_by, clusters, seed)
    intents, _ = learn_intents(train, tiers, good=good, groups=groups)
    router = Router.in_memory(IntentSet(config=config, intents=intents), encoder)
    needed = {m for _, m in tiers}
    usable = [r for r in test if needed <= set(r.outcomes)]
    if not usable:
        raise InputError("no test row has outcomes for every --tiers model")
    cases = outcome_cases(router, usable)
    by_name = {i.name: i for i in intents}
    quality = QualityModel(config, by_name)
    curve = sweep(cases, config, by_name, quality, (None,), (None,), CONFIDENCE_GRID)
    flagship = tiers[-1][1]
    cheapest = tiers[0][1]

    def single(model: str) -> Baseline:
        return Baseline(
            model,
            sum(r.outcomes[model].quality for r in usable) / len(usable),
            sum(r.outcomes[model].cost_usd for r in usable),
            1.0 if model == flagship else 0.0,
        )

    everywhere = sorted(set.intersection(*(set(r.outcomes) for r in usable)))
    baselines = [single(m) for m in everywhere]
    top, low = single(flagship), single(cheapest)
    baselines += [
        Baseline("always-flagship", top.quality, top.cost_usd, 1.0),
        Baseline("always-cheapest", low.quality, low.cost_usd, 0.0),
    ]
    oracle_rows = [oracle(r, good) for r in usable]
    baselines.append(
        Baseline(
            "oracle",
            sum(q for q, _ in oracle_rows) / len(usable),
            sum(c for _, c in oracle_rows),
            None,
        )
    )
    for point in curve:
        s = point.flagship_share
        baselines.append(
            Baseline(
                f"random at {100 * s:.0f}% flagship",
                s * top.quality + (1 - s) * low.quality,
                s * top.cost_usd + (1 - s) * low.cost_usd,
                s,
            )
        )
    savings_at: dict[str, float | None] = {}
    for share in (0.95, 0.98, 1.0):
        ok = [p.savings for p in curve if p.quality >= share * top.quality - 1e-12]
        savings_at[f"{round(100 * share)}%"] = max(ok) if ok else None
    pts = [(p.flagship_share, p.quality) for p in curve]
    return OutcomesReport(
        test_rows=len(usable),
        skipped_rows=len(test) - len(usable),
        flagship=flagship,
        tiers=list(tiers),
        long_text=long_text,
        baselines=_unique(baselines),
        curve=curve,
        savings_at=savings_at,
        apgr=apgr(pts, low.quality, top.quality),
        calls_for_50=calls_for_gap(pts, low.quality, top.quality, 0.5),
        calls_for_80=calls_for_gap(pts, low.quality, top.quality, 0.8),
    )


def _unique(baselines: Sequence[Baseline]) -> list[Baseline]:
    seen: set[str] = set()
    out = []
    for b in baselines:
        if b.name not in seen:
            seen.add(b.name)
            out.append(b)
    return out


def format_outcomes(report: OutcomesReport) -> str:
    top = next(b for b in report.baselines if b.name == "always-flagship")
    lines = [
        f"{report.test_rows} test prompts ({report.skipped_rows} skipped: a tier model has no "
        f"outcome); tiers {', '.join(f'{t}={m}' for t, m in report.tiers)}; long texts: "
        f"{report.long_text}",
        "",
        f"{'policy':<40} {'quality':>8} {'% flagship':>10} {'cost $':>9} {'savings':>8}",
    ]

    def row(name: str, quality: float, cost: float) -> str:
        rel = quality / top.quality if top.quality else float("nan")
        savings = 1 - cost / top.cost_usd if top.cost_usd else float("nan")
        return f"{name:<40} {quality:8.3f} {100 * rel:9.1f}% {cost:9.3f} {100 * savings:7.1f}%"

    for b in report.baselines:
        if not b.name.startswith("random"):
            lines.append(row(b.name, b.quality, b.cost_usd))
    lines.append("")
    lines.append("router sweep (difficulty_confidence; random routing at the same flagship share)")
    randoms = {
        round(b.flagship_share or 0.0, 6): b
        for b in report.baselines
        if b.name.startswith("random")
    }
    for p in report.curve:
        label = f"router d.conf={format_threshold(p.difficulty_confidence)}"
        lines.append(
            row(label, p.quality, p.cost_usd) + f"  flagship {100 * p.flagship_share:5.1f}%"
        )
        rnd = randoms.get(round(p.flagship_share, 6))
        if rnd is not None:
            lines.append(row("  random, same flagship share", rnd.quality, rnd.cost_usd))
    lines.append("")
    for key, value in report.savings_at.items():
        shown = "not reached" if value is None else f"{100 * value:.1f}%"
        lines.append(f"best savings at >= {key} of flagship quality: {shown}")

    def share(x: float | None) -> str:
        return "not reached" if x is None else f"{100 * x:.1f}% flagship calls"

    lines.append(
        f"APGR {report.apgr:.3f}; 50% of the quality gap needs {share(report.calls_for_50)}, "
        f"80% needs {share(report.calls_for_80)}"
    )
    return "\n".join(lines)


def plot_outcomes(report: OutcomesReport, path: Path) -> None:
    """Cost on x, quality on y: baselines as points, the router's sweep as a line."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise MissingDependencyError("matplotlib", "eval") from None
    fig, ax = plt.subplots(figsize=(8, 5), dpi=120)
    curve = sorted(report.curve, key=lambda p: p.cost_usd)
    ax.plot(
        [p.cost_usd for p in curve],
        [p.quality for p in curve],
        marker="o",
        markersize=3,
        label="modeltriage (difficulty_confidence sweep)",
    )
    randoms = sorted(
        (b for b in report.baselines if b.name.startswith("random")), key=lambda b: b.cost_usd
    )
    ax.plot(
        [b.cost_usd for b in randoms],
        [b.quality for b in randoms],
        linestyle="--",
        color="#999999",
        label="random at the same flagship share",
    )
    for b in report.baselines:
        if b.name.startswith("random"):
            continue
        special = b.name in ("always-flagship", "always-cheapest", "oracle")
        ax.scatter(
            [b.cost_usd],
            [b.quality],
            s=30 if special else 12,
            marker="s" if special else "x",
            color="black" if special else "#d62728",
        )
        ax.annotate(
            b.name.split("/")[-1],
            (b.cost_usd, b.quality),
            fontsize=6,
            xytext=(3, 3),
            textcoords="offset points",
        )
    ax.set_xscale("log")
    ax.set_xlabel("total cost of the test prompts, USD (log scale)")
    ax.set_ylabel("mean quality")
    ax.set_title("Quality against cost on labelled outcomes")
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
