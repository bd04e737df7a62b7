#!/usr/bin/env python3
"""The up-front router and the answer-time cascade together, on RouterBench.

Run from the repository root:

    PYTHONPATH=src .venv/bin/python benchmarks/routerbench_combined.py [--seeds 10]
        [--json out.json] [--cache /tmp/modeltriage-routerbench-emb.npz]

Same data, rows, costs and metrics as ``cascade_routerbench.py`` (imported from it): 2,205
prompts with every model's answer; quality and savings against always-flagship
(gpt-4-1106-preview); a cascade pays every cheap answer it asked for, plus the flagship's
when it escalates. Each seed splits the rows in halves stratified by task
(``cascade_routerbench.split``): everything is learned and tuned on one half and scored
on the other; mean over seeds, worst seed in brackets.

The prompt side uses the library's own pieces: all-MiniLM-L6-v2
(``SentenceTransformerEncoder``, the last 1,000 characters of a prompt as ``learn`` writes
it), ``build_in_memory`` over a ``FaissIndex`` of the tuning half, the task voted by
``policy.score_intents`` (vote, top 20). Embeddings are cached in ``--cache`` (first run
about a minute). Policies:

* prompt only (no answer seen): the library's learned router (``evaluate_outcomes``,
  tiers mixtral/Yi-34B/gpt-4); a per-model kNN quality estimate over the nine models that
  answered every row (the cheapest model whose estimate is within delta of the
  flagship's, delta tuned); the kNN task with one model per task (tuned); and the
  task oracle (the true task, one model per task, and on all rows the best random mix
  of models per task: what any router that only knows the task can reach).
* answer time (a cascade): the reference (Yi-34B + Mixtral must agree), and a *plan per
  task*: the kNN task picks, for each task, one of: flagship now; one cheap model; a
  unanimous chain of 2 or 3 cheap models (escalate on any disagreement); a majority of
  three (keep the majority answer, escalate when there is none); two models and a third
  as tie-break. Tuned on the tuning half for the most savings at a quality floor, from
  all options, from the tuning half's 3 best cheap models per task, or from 5 options
  the earlier cascade runs found; optionally with one standard error of margin.
  ``FIXED_PLANS`` were read off all rows: their held-out rows show spread, not skill.

Results and their reading: docs/cascade.md, "Combined with the up-front router".
"""

from __future__ import annotations

import argparse
import itertools
import json
import sys
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import DEFAULT_DATA, library_versions, machine_info, render_table, write_json
from cascade_routerbench import (
    FIXED,
    FLAGSHIP,
    POOL,
    REFERENCE_POLICY,
    Data,
    Outcome,
    chain_outcome,
    combine,
    load_rows,
    metrics,
    short,
    split,
)

from modeltriage.core.config import Scoring
from modeltriage.core.decision import Neighbour
from modeltriage.core.encoders import Encoder, SentenceTransformerEncoder
from modeltriage.core.index import ExemplarRow, LoadedIndex, build_in_memory
from modeltriage.core.scoring import VOTE_TEMPERATURE, score_intents
from modeltriage.core.vector_index import FaissIndex
from modeltriage.learn.embedding_cache import CachingEncoder
from modeltriage.learn.outcome_data import read_outcomes_jsonl
from modeltriage.learn.outcome_eval import evaluate_outcomes

MODELS = (FLAGSHIP, *POOL)  # the nine models that answered every kept row
TASKS = ("arc-challenge", "winogrande", "mbpp")
LIBRARY_TIERS = [
    ("small", "mistralai/mixtral-8x7b-chat"),
    ("mid", "zero-one-ai/Yi-34B-Chat"),
    ("flagship", FLAGSHIP),
]
SCORING = Scoring(top_k=20, aggregation="vote", long_text="tail")
FLOORS = (0.98, 0.985, 0.99)
DELTAS = tuple(round(0.01 * i, 2) for i in range(-5, 41))
# Plans read off all rows (so seen in "tuning"): scored per held-out half below for
# scale, but not held-out results. Options by name, per task in TASKS order.
FIXED_PLANS = {
    "ARC: Mixtral = Yi; Winogrande: flagship now; MBPP: gpt-3.5 only": (
        "unanimous mixtral-8x7b-chat = Yi-34B-Chat",
        "flagship now",
        "gpt-3.5-turbo-1106 only",
    ),
    "ARC: Mixtral = Yi; Winogrande: Mixtral = Yi = Llama-2-70B; MBPP: gpt-3.5 only": (
        "unanimous mixtral-8x7b-chat = Yi-34B-Chat",
        "unanimous mixtral-8x7b-chat = Yi-34B-Chat = llama-2-70b-chat",
        "gpt-3.5-turbo-1106 only",
    ),
    "ARC: Mixtral = Yi = claude-instant; Winogrande: flagship now; MBPP: gpt-3.5 only": (
        "unanimous mixtral-8x7b-chat = Yi-34B-Chat = claude-instant-v1",
        "flagship now",
        "gpt-3.5-turbo-1106 only",
    ),
    "ARC: Mixtral = Yi = claude-instant; Winogrande: Mixtral = Yi = Llama-2-70B; MBPP: flagship": (
        "unanimous mixtral-8x7b-chat = Yi-34B-Chat = claude-instant-v1",
        "unanimous mixtral-8x7b-chat = Yi-34B-Chat = llama-2-70b-chat",
        "flagship now",
    ),
    "ARC: Yi only; Winogrande: flagship now; MBPP: gpt-3.5 only": (
        "Yi-34B-Chat only",
        "flagship now",
        "gpt-3.5-turbo-1106 only",
    ),
    "ARC: flagship now; Winogrande: flagship now; MBPP: gpt-3.5 only": (
        "flagship now",
        "flagship now",
        "gpt-3.5-turbo-1106 only",
    ),
}
MEASURES = ("escalation_pct", "precision", "recall", "quality_pct", "savings_pct")


class DiskCachingEncoder(CachingEncoder):
    """The library's encoder behind its ``CachingEncoder``, the vectors also kept in a
    file so that reruns skip the embedding (about a minute on two cores)."""

    def __init__(self, path: Path) -> None:
        super().__init__(SentenceTransformerEncoder(), progress=False)
        self.path = path
        if path.exists():
            with np.load(path, allow_pickle=False) as cached:
                if "texts" in cached.files and str(cached["model_id"]) == self.model_id:
                    self._vectors.update(
                        zip(cached["texts"].tolist(), cached["vectors"], strict=True)
                    )

    def embed(self, texts: Sequence[str], description: str = "embedding") -> int:
        added = super().embed(texts, description)
        if added:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            np.savez(
                self.path,
                texts=np.array(list(self._vectors)),
                vectors=np.stack(list(self._vectors.values())),
                model_id=np.array(self.model_id),
            )
        return added


# --- the prompt side: the library's index over the tuning half -------------------------


@dataclass(frozen=True)
class Evidence:
    """What the index says about each row: its voted task, and per model the estimated
    quality and cost (neighbours' outcomes weighted like the library's vote)."""

    task: np.ndarray
    quality: dict[str, np.ndarray]
    cost: dict[str, np.ndarray]


def knn_evidence(
    data: Data, texts: Sequence[str], tune: np.ndarray, encoder: Encoder, k: int = 20
) -> Evidence:
    """Index the tuning half; every row gets the evidence of its k nearest tuning rows
    (a tuning row never sees itself: rows are learned leave-one-out)."""
    members = np.flatnonzero(tune)
    rows = [ExemplarRow(str(data.task[i]), texts[int(i)], "moderate") for i in members]
    loaded: LoadedIndex = build_in_memory(rows, encoder, FaissIndex, SCORING)
    vectors = encoder.encode([SCORING.view(t) for t in texts])
    sims, ids = loaded.index.search(vectors, k + 1)
    own = np.where(tune[:, None], members[ids] == np.arange(data.n)[:, None], False)
    keep = np.argsort(own, axis=1, kind="stable")[:, :k]  # drop the row itself
    sims = np.take_along_axis(sims, keep, 1)
    ids = np.take_along_axis(ids, keep, 1)
    weights = np.exp((sims - sims[:, :1]) / VOTE_TEMPERATURE)
    weights /= weights.sum(1, keepdims=True)
    neighbour_rows = members[ids]
    task = np.array(
        [
            score_intents(
                [
                    Neighbour(
                        intent=str(data.task[j]), text="", difficulty="moderate", similarity=s
                    )
                    for j, s in zip(neighbour_rows[r], sims[r].tolist(), strict=True)
                ],
                "vote",
            )[0].intent
            for r in range(data.n)
        ]
    )
    quality = {m: (weights * data.quality[m][neighbour_rows]).sum(1) for m in MODELS}
    cost = {m: (weights * data.cost[m][neighbour_rows]).sum(1) for m in MODELS}
    return Evidence(task, quality, cost)


def auc(score: np.ndarray, label: np.ndarray) -> float | None:
    """Probability that a right answer's score beats a wrong one's (ties count half)."""
    pos, neg = score[label == 1], score[label == 0]
    if len(pos) == 0 or len(neg) == 0:
        return None
    wins = (pos[:, None] > neg[None, :]).sum() + 0.5 * (pos[:, None] == neg[None, :]).sum()
    return float(wins / (len(pos) * len(neg)))


# --- outcomes of the options ------------------------------------------------------------


def single(data: Data, model: str) -> Outcome:
    """Cheap-only: ``model`` answers and is kept, whatever it says."""
    return Outcome(
        np.zeros(data.n, dtype=bool),
        data.quality[model],
        data.cost[model].copy(),
        np.ones(data.n, dtype=bool),
    )


def flagship_now(data: Data) -> Outcome:
    nothing = np.zeros(data.n)
    return Outcome(np.ones(data.n, dtype=bool), nothing, nothing, nothing.astype(bool))


def _answer(data: Data, model: str, i: int) -> str | None:
    if data.rows[i].labels is None:
        return data.norm[model][i]
    return data.choice[model][i]


def vote_outcome(data: Data, trio: Sequence[str], tie_break: bool) -> Outcome:
    """Three cheap answers and a majority. ``tie_break``: ask the first two, and the third
    only when they disagree. Otherwise all three answer. The majority's answer is kept
    (the first model that gave it); no majority escalates."""
    a, b, c = trio
    escalated = np.zeros(data.n, dtype=bool)
    kept = np.zeros(data.n)
    cost = data.cost[a] + data.cost[b]
    for i in range(data.n):
        answers = [_answer(data, m, i) for m in trio]
        pair_agrees = answers[0] is not None and answers[0] == answers[1]
        if not (tie_break and pair_agrees):
            cost[i] += data.cost[c][i]
        counts = Counter(x for x in answers if x is not None)
        top = counts.most_common(1)
        if not top or top[0][1] < 2:
            escalated[i] = True
            continue
        winner = next(m for m, x in zip(trio, answers, strict=True) if x == top[0][0])
        kept[i] = data.quality[winner][i]
    return Outcome(escalated, kept, cost, np.ones(data.n, dtype=bool))


@dataclass(frozen=True)
class Option:
    name: str
    outcome: Outcome
    uses_answers: bool


def options(data: Data, cascades: bool) -> list[Option]:
    """Every way of serving one task's prompts. Chains and trios are cheapest first."""
    out = [Option("flagship now", flagship_now(data), False)]
    out += [Option(f"{short(m)} only", single(data, m), False) for m in POOL]
    if not cascades:
        return out
    by_cost = sorted(POOL, key=lambda m: float(data.cost[m].sum()))
    for size in (2, 3):
        for chain in itertools.combinations(by_cost, size):
            label = " = ".join(short(m) for m in chain)
            out.append(Option(f"unanimous {label}", chain_outcome(data, chain), True))
    for trio in itertools.combinations(by_cost, 3):
        label = ", ".join(short(m) for m in trio)
        out.append(Option(f"majority of {label}", vote_outcome(data, trio, False), True))
        out.append(Option(f"{label} as tie-break", vote_outcome(data, trio, True), True))
    return out


def served(data: Data, outcome: Outcome) -> tuple[np.ndarray, np.ndarray]:
    quality = np.where(outcome.escalated, data.quality[FLAGSHIP], outcome.kept_quality)
    cost = outcome.cheap_cost + np.where(outcome.escalated, data.cost[FLAGSHIP], 0.0)
    return quality, cost


def per_row(data: Data, parts: Sequence[tuple[np.ndarray, Outcome]]) -> Outcome:
    """Row i follows the outcome of the first part whose mask holds it."""
    escalated = np.zeros(data.n, dtype=bool)
    kept, cost = np.zeros(data.n), np.zeros(data.n)
    answered = np.zeros(data.n, dtype=bool)
    done = np.zeros(data.n, dtype=bool)
    for mask, part in parts:
        rows = mask & ~done
        escalated[rows] = part.escalated[rows]
        kept[rows] = part.kept_quality[rows]
        cost[rows] = part.cheap_cost[rows]
        answered[rows] = part.answered[rows]
        done |= rows
    return Outcome(escalated, kept, cost, answered)


def knn_pick(data: Data, ev: Evidence, delta: float) -> Outcome:
    """Prompt only: the model with the lowest estimated cost among those whose estimated
    quality is within ``delta`` of the flagship's (the flagship itself always qualifies)."""
    est_q = np.array([ev.quality[m] for m in MODELS])
    est_c = np.array([ev.cost[m] for m in MODELS])
    choice = np.argmin(np.where(est_q >= est_q[0] - delta, est_c, np.inf), axis=0)
    return per_row(
        data,
        [
            (choice == j, flagship_now(data) if m == FLAGSHIP else single(data, m))
            for j, m in enumerate(MODELS)
        ],
    )


class PlanSearch:
    """The best option per task at a quality floor, searched over every combination."""

    def __init__(self, data: Data, opts: list[Option], families: dict[str, list[int]]) -> None:
        self.data, self.opts = data, opts
        q, c = zip(*(served(data, o.outcome) for o in opts), strict=True)
        self.q, self.c = np.array(q), np.array(c)
        self.families = families  # task -> indices of the options it may use

    def best(
        self,
        task: np.ndarray,
        mask: np.ndarray,
        floor: float,
        z: float = 0.0,
        families: dict[str, list[int]] | None = None,
    ) -> list[int] | None:
        """The plan with the most savings over ``mask`` whose right answers reach ``floor``
        of the flagship's. ``z`` > 0 asks for margin: the answers lost against the
        flagship plus ``z`` standard errors of that loss (rows independent) must fit."""
        d = self.data
        families = self.families if families is None else families
        flag = d.quality[FLAGSHIP]
        flag_q = flag[mask].sum()
        flag_c = d.cost[FLAGSHIP][mask].sum()
        losses, spreads, cs = [], [], []
        for t in TASKS:
            rows = mask & (task == t)
            deficit = flag[rows][None, :] - self.q[families[t]][:, rows]
            losses.append(deficit.sum(1))
            centred = deficit - deficit.mean(1, keepdims=True) if rows.any() else deficit
            spreads.append((centred**2).sum(1))
            cs.append(self.c[families[t]][:, rows].sum(1))

        def total(parts: list[np.ndarray]) -> np.ndarray:
            out: np.ndarray = (
                parts[0][:, None, None] + parts[1][None, :, None] + parts[2][None, None, :]
            )
            return out

        lost = total(losses) + z * np.sqrt(total(spreads))
        quality = 1 - total(losses) / flag_q
        cost = total(cs)
        ok = lost <= (1 - floor) * flag_q + 1e-9
        score = np.where(ok, 1 - cost / flag_c + 1e-9 * quality, -np.inf)
        if not np.isfinite(score).any():
            return None
        picks = np.unravel_index(int(np.argmax(score)), score.shape)
        return [families[t][int(p)] for t, p in zip(TASKS, picks, strict=True)]

    def outcome(self, task: np.ndarray, plan: Sequence[int]) -> Outcome:
        return per_row(
            self.data,
            [(task == t, self.opts[i].outcome) for t, i in zip(TASKS, plan, strict=True)],
        )

    def describe(self, plan: Sequence[int]) -> str:
        return "; ".join(f"{t}: {self.opts[i].name}" for t, i in zip(TASKS, plan, strict=True))


def top_family(
    data: Data, opts: list[Option], task: np.ndarray, mask: np.ndarray, size: int = 3
) -> dict[str, list[int]]:
    """Per task, options built only from the ``size`` cheap models most often right on
    ``mask`` for that task: flagship now, each alone, and their unanimous chains."""
    named = {o.name: i for i, o in enumerate(opts)}
    family: dict[str, list[int]] = {}
    for t in TASKS:
        rows = mask & (task == t)
        top = sorted(POOL, key=lambda m: -float(data.quality[m][rows].sum()))[:size]
        top = sorted(top, key=lambda m: float(data.cost[m].sum()))  # cheapest first
        names = ["flagship now", *(f"{short(m)} only" for m in top)]
        for k in range(2, size + 1):
            names += [
                "unanimous " + " = ".join(short(m) for m in chain)
                for chain in itertools.combinations(top, k)
            ]
        family[t] = [named[n] for n in names]
    return family


def bagged_plan(
    search: PlanSearch,
    task: np.ndarray,
    tune: np.ndarray,
    floor: float,
    families: dict[str, list[int]],
    seed: int,
    rounds: int = 25,
) -> list[int] | None:
    """The plan chosen most often when tuning on random halves of the tuning rows."""
    rng = np.random.default_rng(seed)
    votes: Counter[tuple[int, ...]] = Counter()
    for _ in range(rounds):
        plan = search.best(task, tune & (rng.random(len(tune)) < 0.5), floor, families=families)
        if plan is not None:
            votes[tuple(plan)] += 1
    return list(votes.most_common(1)[0][0]) if votes else None


# --- prompt-only upper bound: the task oracle with mixing, on all rows ------------------


def task_oracle_mix(data: Data, floor: float) -> dict[str, Any]:
    """Most savings at ``floor`` for a router that knows each prompt's task and sends a
    fixed share of the task's prompts to each model (a random mix). Exact: per task,
    the upper concave frontier of (cost, right answers) over the models; moves along
    it are bought at the best right-answers-lost per dollar saved across tasks."""
    flag_q = data.quality[FLAGSHIP].sum()
    flag_c = data.cost[FLAGSHIP].sum()
    steps: list[tuple[float, float, float]] = []  # (answers lost per $ saved, $ saved, lost)
    start_q = start_c = 0.0
    for t in TASKS:
        m = data.task == t
        pts = {(float(data.cost[x][m].sum()), float(data.quality[x][m].sum())) for x in MODELS}
        hull = [max(pts, key=lambda p: (p[1], -p[0]))]  # the best model, cheapest of equals
        start_c += hull[0][0]
        start_q += hull[0][1]
        while cheaper := [p for p in pts if p[0] < hull[-1][0]]:
            c0, q0 = hull[-1]
            hull.append(min(cheaper, key=lambda p: ((q0 - p[1]) / (c0 - p[0]), p[0])))
        for (c0, q0), (c1, q1) in itertools.pairwise(hull):
            steps.append(((q0 - q1) / (c0 - c1), c0 - c1, q0 - q1))
    budget = start_q - floor * flag_q
    saved = 0.0
    for _, dollars, lost in sorted(steps):
        if budget <= 0:
            break
        share = min(1.0, budget / lost) if lost > 0 else 1.0
        saved += share * dollars
        budget -= share * lost
    quality = floor * flag_q + max(budget, 0.0)
    return {
        "quality_pct": 100 * quality / flag_q,
        "savings_pct": 100 * (1 - (start_c - saved) / flag_c),
    }


# --- the library's own learned router, on the same split --------------------------------


def library_router(
    path: Path, data: Data, tune: np.ndarray, encoder: Encoder
) -> dict[str, float | None]:
    """``evaluate_outcomes`` learned on the tuning half, scored on the other; its
    difficulty_confidence is chosen on the held-out curve (as ``eval outcomes`` reports
    it: optimistic)."""
    ids = {r.id for r, t in zip(data.rows, tune, strict=True) if t}
    held = {r.id for r, t in zip(data.rows, tune, strict=True) if not t}
    rows = read_outcomes_jsonl(path)
    report = evaluate_outcomes(
        [r for r in rows if r.id in ids], [r for r in rows if r.id in held], LIBRARY_TIERS, encoder
    )
    out: dict[str, float | None] = {"apgr": report.apgr}
    for key, value in report.savings_at.items():
        out[f"savings_at_{key}"] = None if value is None else 100 * value
    flag = next(b for b in report.baselines if b.name == "always-flagship")
    best = max(report.curve, key=lambda p: p.savings if p.quality >= 0.98 * flag.quality else -1)
    out["quality_pct_at_98"] = 100 * best.quality / flag.quality
    return out


# --- runs --------------------------------------------------------------------------------


@dataclass
class Runs:
    label: str
    uses_answers: bool
    items: list[dict[str, Any]]


def summary(run: Runs) -> dict[str, Any]:
    items = run.items
    mean = {
        key: float(np.mean(vals))
        if (vals := [i[key] for i in items if i[key] is not None])
        else None
        for key in MEASURES
    }
    low = {key: float(np.min([i[key] for i in items])) for key in ("quality_pct", "savings_pct")}
    chosen = Counter(i.get("policy", "") for i in items).most_common(1)[0]
    return {
        "label": run.label,
        "uses_answers": run.uses_answers,
        "seeds": len(items),
        "held_out_mean": mean,
        "held_out_min": low,
        "modal_policy": chosen[0],
        "modal_policy_chosen": f"{chosen[1]}/{len(items)}",
        "per_seed": items,
    }


def figures(f: dict[str, Any]) -> list[Any]:
    """A metrics() result as table cells: to flagship, precision, recall, quality, savings."""
    return [f[key] for key in MEASURES]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--data", type=Path, default=DEFAULT_DATA / "routerbench" / "train.outcomes.jsonl"
    )
    parser.add_argument("--seeds", type=int, default=10)
    parser.add_argument("--cache", type=Path, default=Path("/tmp/modeltriage-routerbench-emb.npz"))
    parser.add_argument("--no-library", action="store_true", help="skip evaluate_outcomes")
    parser.add_argument("--json", metavar="PATH")
    args = parser.parse_args(argv)

    rows, dropped = load_rows(args.data)
    data = Data(rows)
    raw_text = {
        json.loads(line)["id"]: json.loads(line)["text"]
        for line in args.data.open(encoding="utf-8")
    }
    encoder = DiskCachingEncoder(args.cache)
    texts = [raw_text[r.id] for r in rows]
    flag_q, flag_c = data.quality[FLAGSHIP].sum(), data.cost[FLAGSHIP].sum()
    print(f"{data.n} prompts ({dropped} left out); flagship {flag_q:.0f} right, ${flag_c:.2f}")

    prompt_opts = options(data, cascades=False)
    all_opts = options(data, cascades=True)
    everything = list(range(len(all_opts)))
    no_answers = [i for i, o in enumerate(all_opts) if not o.uses_answers]
    core = [
        i
        for i, o in enumerate(all_opts)
        if o.name
        in (
            "flagship now",
            "Yi-34B-Chat only",
            "gpt-3.5-turbo-1106 only",
            "unanimous mixtral-8x7b-chat = Yi-34B-Chat",
            "unanimous mixtral-8x7b-chat = Yi-34B-Chat = llama-2-70b-chat",
        )
    ]
    searches = {
        "prompt": PlanSearch(data, all_opts, dict.fromkeys(TASKS, no_answers)),
        "full": PlanSearch(data, all_opts, dict.fromkeys(TASKS, everything)),
        "core": PlanSearch(data, all_opts, dict.fromkeys(TASKS, core)),
    }
    del prompt_opts
    named = {o.name: i for i, o in enumerate(all_opts)}
    ref_outcome = combine(data, REFERENCE_POLICY, {})
    free_flag = combine(data, FIXED["reference_free_flagship"][1], {})

    runs: dict[str, Runs] = {}

    def add(key: str, label: str, answers: bool, item: dict[str, Any]) -> None:
        runs.setdefault(key, Runs(label, answers, [])).items.append(item)

    aucs: dict[str, list[float]] = {}
    library: list[dict[str, float | None]] = []
    task_acc: list[float] = []
    for seed in range(args.seeds):
        tune = split(data, seed)
        held = ~tune
        ev = knn_evidence(data, texts, tune, encoder)
        task_acc.append(float((ev.task[held] == data.task[held]).mean()))
        for t in TASKS:
            rows_t = held & (data.task == t)
            for m in MODELS:
                score = auc(ev.quality[m][rows_t], data.quality[m][rows_t])
                if score is not None:
                    aucs.setdefault(f"{t}|{short(m)}", []).append(score)
        add(
            "reference",
            "reference: Yi-34B + Mixtral must agree",
            True,
            metrics(data, ref_outcome, held) | {"seed": seed},
        )
        add(
            "reference_free",
            "reference, free-form straight to flagship",
            True,
            metrics(data, free_flag, held) | {"seed": seed},
        )
        # Per-model kNN estimate: cheapest (estimated cost) model within delta of the
        # flagship's estimated quality; delta tuned on the tuning half (leave-one-out).
        curve = [(delta, knn_pick(data, ev, delta)) for delta in DELTAS]
        for floor in (0.98, 0.96):
            ok = [
                (metrics(data, o, tune)["savings_pct"], d, o)
                for d, o in curve
                if metrics(data, o, tune)["quality_pct"] >= 100 * floor - 1e-9
            ]
            if ok:
                _, delta, outcome = max(ok, key=lambda x: x[0])
                add(
                    f"knn_models/{floor}",
                    f"per-model kNN estimate, delta tuned for >= {100 * floor:g}%",
                    False,
                    metrics(data, outcome, held) | {"seed": seed, "policy": f"delta {delta}"},
                )
        # Plans per task: task from the kNN vote (realisable) or the true task (oracle).
        for floor in FLOORS:
            for key, search, task, label, answers in (
                ("prompt", searches["prompt"], ev.task, "kNN task, one model per task", False),
                ("oracle", searches["prompt"], data.task, "task oracle, one model per task", False),
                ("core", searches["core"], ev.task, "kNN task, plan from 5 options", True),
                ("full", searches["full"], ev.task, "kNN task, plan from all options", True),
            ):
                plan = search.best(task, tune, floor)
                if key == "full":
                    top = top_family(data, all_opts, task, tune)
                    for z, name, family_label in (
                        (0.0, "top3", "kNN task, plan from the 3 best cheap models per task"),
                        (
                            1.0,
                            "top3careful",
                            "kNN task, plan from the 3 best cheap models per task, one SE margin",
                        ),
                    ):
                        small = search.best(task, tune, floor, z=z, families=top)
                        if small is not None:
                            add(
                                f"{name}/{floor}",
                                f"{family_label}, tuned for >= {100 * floor:g}%",
                                True,
                                metrics(data, search.outcome(task, small), held)
                                | {"seed": seed, "policy": search.describe(small)},
                            )
                    voted = bagged_plan(search, task, tune, floor, top, seed)
                    if voted is not None:
                        add(
                            f"top3bagged/{floor}",
                            "kNN task, plan from the 3 best cheap models per task, most "
                            f"chosen over 25 half-subsamples, tuned for >= {100 * floor:g}%",
                            True,
                            metrics(data, search.outcome(task, voted), held)
                            | {"seed": seed, "policy": search.describe(voted)},
                        )
                    careful = search.best(task, tune, floor, z=1.0)
                    if careful is not None:
                        add(
                            f"careful/{floor}",
                            f"kNN task, plan from all options, tuned for >= {100 * floor:g}% "
                            "with one standard error of margin",
                            True,
                            metrics(data, search.outcome(task, careful), held)
                            | {"seed": seed, "policy": search.describe(careful)},
                        )
                if plan is None:
                    continue
                outcome = search.outcome(task, plan)
                add(
                    f"{key}/{floor}",
                    f"{label}, tuned for >= {100 * floor:g}%",
                    answers and any(all_opts[i].uses_answers for i in plan),
                    metrics(data, outcome, held) | {"seed": seed, "policy": search.describe(plan)},
                )
        for label, names in FIXED_PLANS.items():
            plan = [named[n] for n in names]
            outcome = searches["full"].outcome(ev.task, plan)
            add(
                f"fixed/{label}",
                f"{label} (read off all rows)",
                any(all_opts[i].uses_answers for i in plan),
                metrics(data, outcome, held) | {"seed": seed},
            )
        if not args.no_library:
            library.append(library_router(args.data, data, tune, encoder))
        print(f"seed {seed} done", flush=True)

    summaries = {key: summary(run) for key, run in runs.items()}
    reference_by_seed = {item["seed"]: item for item in runs["reference"].items}
    for key, s in summaries.items():
        s["beats_reference"] = sum(
            mine["quality_pct"] > reference_by_seed[mine["seed"]]["quality_pct"]
            and mine["savings_pct"] > reference_by_seed[mine["seed"]]["savings_pct"]
            for mine in runs[key].items
        )
        s["meets_98_at_50"] = sum(
            i["quality_pct"] >= 98 and i["savings_pct"] >= 50 for i in runs[key].items
        )
    print(f"\nkNN task accuracy on held-out rows: mean {100 * np.mean(task_acc):.2f}%")
    print(
        "\nHeld-out halves: mean over seeds (worst seed); 'beats ref': seeds better than the "
        "reference on both quality and savings; '98@50': seeds with >= 98% quality and "
        ">= 50% savings"
    )
    headers = [
        "policy",
        "answers?",
        "to flagship %",
        "precision",
        "recall",
        "quality %",
        "savings %",
        "beats ref",
        "98@50",
        "seeds",
    ]
    table = []
    for s in summaries.values():
        mean, low = s["held_out_mean"], s["held_out_min"]
        table.append(
            [
                s["label"],
                "y" if s["uses_answers"] else "n",
                mean["escalation_pct"],
                mean["precision"],
                mean["recall"],
                f"{mean['quality_pct']:.1f} ({low['quality_pct']:.1f})",
                f"{mean['savings_pct']:.1f} ({low['savings_pct']:.1f})",
                f"{s['beats_reference']}/{args.seeds}",
                f"{s['meets_98_at_50']}/{args.seeds}",
                s["seeds"],
            ]
        )
    print(render_table(headers, table))
    print("\nMost chosen plan per row:")
    for s in summaries.values():
        if s["modal_policy"]:
            print(f"- {s['label']} [{s['modal_policy_chosen']}]: {s['modal_policy']}")

    print("\nFixed plans on all rows (true task):")
    fixed_rows = []
    fixed_json = {}
    for label, names in FIXED_PLANS.items():
        outcome = searches["full"].outcome(data.task, [named[n] for n in names])
        f = metrics(data, outcome)
        fixed_json[label] = f
        fixed_rows.append([label, *figures(f)])
    print(
        render_table(
            ["plan", "escalated %", "precision", "recall", "quality %", "savings %"], fixed_rows
        )
    )

    print("\nPer task, all rows: each option's right answers and cost (the frontier only)")
    frontier_rows: list[list[Any]] = []
    for t in TASKS:
        m = data.task == t
        points: list[tuple[str, float, float]] = []
        for o in all_opts:
            got, paid = served(data, o.outcome)
            points.append((o.name, float(got[m].sum()), float(paid[m].sum())))
        points.sort(key=lambda p: (p[2], -p[1]))
        best = -1.0
        for name, right, cost in points:
            if right > best:
                best = right
                share = 100 * right / data.quality[FLAGSHIP][m].sum()
                frontier_rows.append(
                    [t, name, share, 100 * (1 - cost / data.cost[FLAGSHIP][m].sum())]
                )
    print(render_table(["task", "option", "quality % of flagship", "savings %"], frontier_rows))
    print("\nUnanimity, majority and tie-break for the same three models, all rows:")
    trio_rows: list[list[Any]] = []
    for trio in (
        ("mistralai/mixtral-8x7b-chat", "zero-one-ai/Yi-34B-Chat", "meta/llama-2-70b-chat"),
        ("mistralai/mixtral-8x7b-chat", "zero-one-ai/Yi-34B-Chat", "claude-instant-v1"),
    ):
        members = ", ".join(short(x) for x in trio)
        for kind, rule in (
            ("unanimous " + " = ".join(short(x) for x in trio), "unanimous"),
            (f"majority of {members}", "majority"),
            (f"{members} as tie-break", "tie-break"),
        ):
            outcome = searches["full"].outcome(
                data.task, [named[kind]] * 2 + [named["flagship now"]]
            )
            f = metrics(data, outcome)
            trio_rows.append([members, rule, *figures(f)])
    print(
        render_table(
            [
                "models (MBPP to flagship)",
                "rule",
                "to flagship %",
                "precision",
                "recall",
                "quality %",
                "savings %",
            ],
            trio_rows,
        )
    )

    bound = {str(floor): task_oracle_mix(data, floor) for floor in (0.98, 0.99, 0.96)}
    print("\nTask-oracle upper bound, all rows (knows the task, random mix of models per task):")
    for level, b in bound.items():
        print(f"- >= {100 * float(level):g}% quality: at most {b['savings_pct']:.1f}% savings")

    print("\nkNN per-model correctness estimate: AUC within a task, held-out rows (mean of seeds)")
    auc_rows: list[list[Any]] = []
    for key, scores in aucs.items():
        task_name, model_name = key.split("|")
        auc_rows.append([task_name, model_name, float(np.mean(scores))])
    print(render_table(["task", "model", "AUC"], auc_rows))

    if library:
        print("\nLibrary learned router (evaluate_outcomes, tiers mixtral/Yi/gpt-4, tail):")
        for key in library[0]:
            vals = [v for x in library if (v := x[key]) is not None]
            shown = (
                f"{np.mean(vals):.3f} (worst {np.min(vals):.3f}, {len(vals)}/{len(library)} seeds)"
                if vals
                else "not reached"
            )
            print(f"- {key}: {shown}")

    write_json(
        args.json,
        {
            "benchmark": "routerbench_combined",
            "data": {"path": str(args.data), "prompts": data.n, "left_out": dropped},
            "seeds": args.seeds,
            "knn_task_accuracy": task_acc,
            "policies": summaries,
            "fixed_plans_all_rows": fixed_json,
            "task_frontiers_all_rows": frontier_rows,
            "trios_all_rows": trio_rows,
            "task_oracle_mix_all_rows": bound,
            "auc": {k: float(np.mean(v)) for k, v in aucs.items()},
            "library_router": library,
            "machine": machine_info(),
            "libraries": library_versions(),
        },
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
