#!/usr/bin/env python3
"""The answer-time cascade check on RouterBench's real answers.

Run from the repository root:

    .venv/bin/python benchmarks/cascade_routerbench.py [--seeds 10] [--floor 0.99]
        [--json out.json]

Data: ``../shared/data/routerbench/train.outcomes.jsonl``: 2,225 prompts (ARC-Challenge,
Winogrande, MBPP) with the answer, correctness (quality 0/1) and cost of 11 models.
Rows where any of the models used here is missing are left out (the count is printed).

A policy lets a cheap model answer first and runs ``modeltriage.followup.answers.check_answer``
on the answer; when it escalates, the flagship (gpt-4-1106-preview) answers instead.
Per prompt: quality = the flagship's if escalated, else the cheap answer's; cost = every
cheap answer paid for, plus the flagship's if escalated. Reported against always-flagship:
quality as a % of its quality, savings as 1 - cost / its cost. "Wrong" means the cheap
answer that would have been kept has quality 0: precision = wrong among escalated,
recall = escalated among wrong.

Multiple-choice prompts end in "A) ... B) ...": the labels are passed as ``choices`` (labels
only: the prompt asks for a letter, so an answer that names no letter is a format failure,
and RouterBench grades it wrong). MBPP answers are free-form code.

1. Each signal alone and combined, for each cheap first try, on all rows (nothing tuned).
   RouterBench has no self-rated confidences or log-probabilities: those signals cannot
   be measured here. Disagreement uses the cheapest other first-try model as the second
   opinion.
2. Policies with second opinions, tuned on one half of the rows and scored on the other
   (split stratified by task, ``--seeds`` seeds): the reference (Yi-34B + Mixtral, escalate
   when their answers disagree), and a search over "unanimous chains": ask cheap models
   in order, stop and escalate at the first answer that disagrees with the first (or
   fails a text signal), keep the first's answer when all agree. The chain may differ for
   two-option prompts (chance agreement 1/2) and three-or-more-option prompts (1/4), and
   free-form answers get one of: straight to the flagship, a cheap model's answer kept
   unless a text signal fires, or a second opinion compared as normalised text.
   Two objectives: the most savings keeping ``--floor`` of flagship quality, and the most
   savings keeping at least the reference's quality (on the tuning half).

RouterBench (Hu et al., 2024, arXiv 2403.12031), zero-shot subsets as committed in
github.com/shuhao02/RouterDC: evaluation only, never copied.
"""

from __future__ import annotations

import argparse
import itertools
import json
import random
import re
import sys
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import DEFAULT_DATA, library_versions, machine_info, render_table, write_json

from modeltriage.core.escalation_settings import EscalationSettings
from modeltriage.followup.answers import check_answer, extract_choice, normalise_answer
from modeltriage.learn.outcome_data import unwrap_response as unwrap

FLAGSHIP = "gpt-4-1106-preview"
FIRST_TRIES = (
    "mistralai/mistral-7b-chat",
    "mistralai/mixtral-8x7b-chat",
    "zero-one-ai/Yi-34B-Chat",
    "gpt-3.5-turbo-1106",
)
# Second opinions: every model under a fifth of the flagship's cost (not claude-v1/v2).
POOL = (
    "mistralai/mistral-7b-chat",
    "WizardLM/WizardLM-13B-V1.2",
    "mistralai/mixtral-8x7b-chat",
    "meta/code-llama-instruct-34b-chat",
    "zero-one-ai/Yi-34B-Chat",
    "claude-instant-v1",
    "meta/llama-2-70b-chat",
    "gpt-3.5-turbo-1106",
)
REFERENCE = ("zero-one-ai/Yi-34B-Chat", "mistralai/mixtral-8x7b-chat")
TEXT_SIGNALS = ("empty", "truncated", "refusal", "hedge", "no_choice")
CITATION = (
    "RouterBench (Hu et al., 2024, arXiv 2403.12031), zero-shot subsets from "
    "github.com/shuhao02/RouterDC datasets/routerbench_zs at commit 0e63989"
)

# Every signal off: a row of the table turns on the ones it measures.
OFF: dict[str, Any] = {
    "empty": False,
    "truncated": False,
    "refusal": False,
    "hedge": False,
    "no_choice": False,
    "min_self_confidence": None,
    "min_mean_logprob": None,
    "disagreement": False,
}


def short(model: str) -> str:
    return model.rsplit("/", 1)[-1]


@dataclass(frozen=True)
class Row:
    id: str
    task: str
    labels: tuple[str, ...] | None  # None: a free-form (code) prompt
    quality: dict[str, float]
    cost: dict[str, float]
    answers: dict[str, str]


def prompt_labels(text: str) -> tuple[str, ...] | None:
    """The option labels of the last question: the "X) ..." lines closing the prompt
    (few-shot prompts repeat solved questions above it)."""
    found: list[str] = []
    for line in reversed(text.rstrip().splitlines()):
        match = re.match(r"^([A-Z])\) ", line)
        if match is not None:
            found.append(match.group(1))
        elif found:
            break
    return tuple(reversed(found)) or None


def load_rows(path: Path) -> tuple[list[Row], int]:
    needed = {FLAGSHIP, *POOL}
    rows: list[Row] = []
    dropped = 0
    with path.open(encoding="utf-8") as fh:
        for line in fh:
            raw = json.loads(line)
            outcomes = raw["outcomes"]
            if not needed <= set(outcomes) or not needed <= set(raw["responses"]):
                dropped += 1
                continue
            labels = None if raw["task"] == "mbpp" else prompt_labels(raw["text"])
            rows.append(
                Row(
                    id=raw["id"],
                    task=raw["task"],
                    labels=labels,
                    quality={m: float(outcomes[m]["quality"]) for m in needed},
                    cost={m: float(outcomes[m]["cost_usd"]) for m in needed},
                    answers={m: unwrap(raw["responses"][m]) for m in needed},
                )
            )
    return rows, dropped


class Data:
    """Per-row arrays, computed once: qualities, costs, text-signal verdicts, choices."""

    def __init__(self, rows: list[Row]) -> None:
        self.rows = rows
        self.n = len(rows)
        self.quality = {m: np.array([r.quality[m] for r in rows]) for m in (FLAGSHIP, *POOL)}
        self.cost = {m: np.array([r.cost[m] for r in rows]) for m in (FLAGSHIP, *POOL)}
        self.free = np.array([r.labels is None for r in rows])
        self.two = np.array([r.labels is not None and len(r.labels) == 2 for r in rows])
        self.many = ~self.free & ~self.two
        self.task = np.array([r.task for r in rows])
        self._signals: dict[tuple[str, str], np.ndarray] = {}
        text_only = EscalationSettings(**{**OFF, **dict.fromkeys(TEXT_SIGNALS, True)})
        self.text_fail = {m: self.check(m, text_only) for m in POOL}
        self.choice = {
            m: [None if r.labels is None else extract_choice(r.answers[m], r.labels) for r in rows]
            for m in POOL
        }
        self.norm = {m: [normalise_answer(r.answers[m]) for r in rows] for m in POOL}

    def check(
        self, model: str, settings: EscalationSettings, second: str | None = None
    ) -> np.ndarray:
        """Whether check_answer escalates each row's answer from ``model``."""
        return np.array(
            [
                check_answer(
                    r.answers[model],
                    settings,
                    choices=r.labels,
                    second_answer=None if second is None else r.answers[second],
                ).escalate
                for r in self.rows
            ]
        )

    def agree(self, first: str, other: str) -> np.ndarray:
        """answers_agree(first, other, choices), from the cached extractions."""
        out = np.empty(self.n, dtype=bool)
        for i, r in enumerate(self.rows):
            if r.labels is None:
                out[i] = self.norm[first][i] == self.norm[other][i]
            else:
                one = self.choice[first][i]
                out[i] = one is not None and one == self.choice[other][i]
        return out


@dataclass(frozen=True)
class Outcome:
    """A policy's per-row result: sent to the flagship or not, the quality of the cheap
    answer it would keep, what the cheap answers cost, and whether there was a cheap
    answer at all (free-form prompts may go straight to the flagship)."""

    escalated: np.ndarray
    kept_quality: np.ndarray
    cheap_cost: np.ndarray
    answered: np.ndarray


def metrics(data: Data, outcome: Outcome, mask: np.ndarray | None = None) -> dict[str, Any]:
    m = np.ones(data.n, dtype=bool) if mask is None else mask
    esc = outcome.escalated[m]
    answered = outcome.answered[m]
    # Precision and recall are about cheap answers: rows sent straight to the flagship
    # have none to be right or wrong about. The escalation rate counts them as sent up.
    wrong = (outcome.kept_quality[m] == 0) & answered
    quality = np.where(esc, data.quality[FLAGSHIP][m], outcome.kept_quality[m]).sum()
    cost = (outcome.cheap_cost[m] + np.where(esc, data.cost[FLAGSHIP][m], 0)).sum()
    caught = int((esc & wrong).sum())
    checked = esc & answered
    return {
        "n": int(m.sum()),
        "escalation_pct": 100 * float(esc.mean()),
        "precision": caught / int(checked.sum()) if checked.any() else None,
        "recall": caught / int(wrong.sum()) if wrong.any() else None,
        "quality_pct": 100 * float(quality / data.quality[FLAGSHIP][m].sum()),
        "savings_pct": 100 * float(1 - cost / data.cost[FLAGSHIP][m].sum()),
    }


# --- part 1: each signal, one cheap first try --------------------------------------


def single_model_rows(data: Data) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for first in FIRST_TRIES:
        second = next(m for m in FIRST_TRIES if m != first)
        kept = data.quality[first]
        variants: list[tuple[str, EscalationSettings, str | None]] = [
            ("never escalate", EscalationSettings(**OFF), None),
            *((s, EscalationSettings(**{**OFF, s: True}), None) for s in TEXT_SIGNALS),
            (
                "all text signals",
                EscalationSettings(**{**OFF, **dict.fromkeys(TEXT_SIGNALS, True)}),
                None,
            ),
            (
                f"disagreement ({short(second)})",
                EscalationSettings(**{**OFF, "disagreement": True}),
                second,
            ),
            (
                f"text + disagreement ({short(second)})",
                EscalationSettings(
                    **{**OFF, **dict.fromkeys(TEXT_SIGNALS, True), "disagreement": True}
                ),
                second,
            ),
        ]
        for name, settings, other in variants:
            escalated = data.check(first, settings, other)
            cheap = data.cost[first] + (0 if other is None else data.cost[other])
            row = metrics(data, Outcome(escalated, kept, cheap, np.ones(data.n, dtype=bool)))
            out.append({"first_try": short(first), "signal": name, **row})
        for name in ("low_self_confidence", "low_logprob"):
            out.append({"first_try": short(first), "signal": name, "n": 0, "note": "no data"})
    return out


# --- part 2: second-opinion policies, tuned on one half, scored on the other -------


@dataclass(frozen=True)
class Policy:
    two: tuple[str, ...]  # chain for two-option prompts
    many: tuple[str, ...]  # chain for prompts with three or more options
    free: tuple[str, ...]  # () flagship directly; (m,) keep m unless a text signal; (m, o)

    def describe(self) -> str:
        def chain(c: tuple[str, ...]) -> str:
            return " = ".join(short(m) for m in c)

        if not self.free:
            free = "flagship"
        elif len(self.free) == 1:
            free = f"keep {short(self.free[0])} unless a text signal"
        else:
            free = f"second opinion {chain(self.free)}"
        if self.two == self.many:
            return f"closed-form: {chain(self.two)}; free-form: {free}"
        return f"2 options: {chain(self.two)}; 3+ options: {chain(self.many)}; free-form: {free}"

    def as_dict(self) -> dict[str, Any]:
        return {"two_options": self.two, "three_plus_options": self.many, "free_form": self.free}


def chain_outcome(data: Data, chain: Sequence[str]) -> Outcome:
    """Ask ``chain`` in order; escalate at the first text signal or disagreement with the
    first answer, and pay only for the models asked."""
    first = chain[0]
    ok = ~data.text_fail[first]
    cost = data.cost[first].copy()
    for other in chain[1:]:
        cost += np.where(ok, data.cost[other], 0.0)
        ok &= data.agree(first, other)
    return Outcome(~ok, data.quality[first], cost, np.ones(data.n, dtype=bool))


def free_outcome(data: Data, free: tuple[str, ...]) -> Outcome:
    if not free:  # straight to the flagship: no cheap answer to keep or pay for
        nothing = np.zeros(data.n)
        return Outcome(np.ones(data.n, dtype=bool), nothing, nothing, nothing.astype(bool))
    return chain_outcome(data, free)


def combine(data: Data, policy: Policy, cache: dict[Any, Outcome]) -> Outcome:
    def get(key: Any, make: Any) -> Outcome:
        if key not in cache:
            cache[key] = make()
        return cache[key]

    parts = [
        (data.two, get(("chain", policy.two), lambda: chain_outcome(data, policy.two))),
        (data.many, get(("chain", policy.many), lambda: chain_outcome(data, policy.many))),
        (data.free, get(("free", policy.free), lambda: free_outcome(data, policy.free))),
    ]
    escalated = np.zeros(data.n, dtype=bool)
    kept = np.zeros(data.n)
    cost = np.zeros(data.n)
    answered = np.zeros(data.n, dtype=bool)
    for mask, part in parts:
        escalated[mask] = part.escalated[mask]
        kept[mask] = part.kept_quality[mask]
        cost[mask] = part.cheap_cost[mask]
        answered[mask] = part.answered[mask]
    return Outcome(escalated, kept, cost, answered)


def split(data: Data, seed: int) -> np.ndarray:
    """A tuning mask: half of each task's rows, chosen by ``seed``."""
    rng = random.Random(seed)
    tune = np.zeros(data.n, dtype=bool)
    for task in sorted(set(data.task.tolist())):
        idx = [i for i in range(data.n) if data.task[i] == task]
        rng.shuffle(idx)
        tune[idx[: len(idx) // 2]] = True
    return tune


class Search:
    """Every candidate policy's quality and cost per group, summed over a mask in numpy."""

    def __init__(self, data: Data) -> None:
        self.data = data
        # Cheapest first: when every answer agrees the first is kept, so asking the
        # cheaper models first only saves money. This also keeps the search small
        # (84 chains), which matters for how well the choice holds up on held-out rows.
        by_cost = sorted(POOL, key=lambda m: float(data.cost[m].sum()))
        self.chains = [c for k in (2, 3) for c in itertools.combinations(by_cost, k)]
        self.frees: list[tuple[str, ...]] = [
            (),
            *((m,) for m in POOL),
            *itertools.combinations(by_cost, 2),
        ]
        flag_q, flag_c = data.quality[FLAGSHIP], data.cost[FLAGSHIP]

        def served(outcome: Outcome) -> tuple[np.ndarray, np.ndarray]:
            q = np.where(outcome.escalated, flag_q, outcome.kept_quality)
            c = outcome.cheap_cost + np.where(outcome.escalated, flag_c, 0.0)
            return q, c

        chain_q, chain_c = zip(*(served(chain_outcome(data, c)) for c in self.chains), strict=True)
        free_q, free_c = zip(*(served(free_outcome(data, f)) for f in self.frees), strict=True)
        self.chain_q, self.chain_c = np.array(chain_q), np.array(chain_c)
        self.free_q, self.free_c = np.array(free_q), np.array(free_c)

    def best(self, mask: np.ndarray, floor_quality: float, family: str) -> Policy | None:
        """The policy of ``family`` with the most savings whose quality over ``mask`` (as
        a fraction of the flagship's) reaches ``floor_quality``; ties go to the higher
        quality. Families: ``same`` (one chain for every closed-form prompt, free-form
        answers straight to the flagship), ``per_options`` (a chain per option count),
        ``full`` (and a choice of free-form handling)."""
        d = self.data
        flag_q = d.quality[FLAGSHIP][mask].sum()
        flag_c = d.cost[FLAGSHIP][mask].sum()
        two, many, free = mask & d.two, mask & d.many, mask & d.free
        q2, c2 = self.chain_q[:, two].sum(1), self.chain_c[:, two].sum(1)
        q3, c3 = self.chain_q[:, many].sum(1), self.chain_c[:, many].sum(1)
        qf, cf = self.free_q[:, free].sum(1), self.free_c[:, free].sum(1)
        if family != "full":  # free-form answers straight to the flagship: self.frees[0]
            qf, cf = qf[:1], cf[:1]
        quality = (q2[:, None, None] + q3[None, :, None] + qf[None, None, :]) / flag_q
        savings = 1 - (c2[:, None, None] + c3[None, :, None] + cf[None, None, :]) / flag_c
        # Quality is a count of right answers: compare with a hair of float tolerance.
        score = np.where(quality >= floor_quality - 1e-12, savings + 1e-9 * quality, -np.inf)
        if family == "same":
            diagonal = np.full_like(score, -np.inf)
            idx = np.arange(len(self.chains))
            diagonal[idx, idx, :] = score[idx, idx, :]
            score = diagonal
        if not np.isfinite(score).any():
            return None
        i, j, k = np.unravel_index(int(np.argmax(score)), score.shape)
        return Policy(self.chains[i], self.chains[j], self.frees[k])


REFERENCE_POLICY = Policy(REFERENCE, REFERENCE, REFERENCE)
# The reference without its one sure waste: a second opinion on free-form answers, which
# never agree word for word (0 of 299 MBPP pairs do), so they always escalate anyway.
REFERENCE_FREE_TO_FLAGSHIP = Policy(REFERENCE, REFERENCE, ())
FIXED = {
    "reference": ("reference: Yi-34B + Mixtral must agree", REFERENCE_POLICY),
    "reference_free_flagship": (
        "reference, free-form straight to flagship",
        REFERENCE_FREE_TO_FLAGSHIP,
    ),
}
FAMILIES = {
    "same": "one chain",
    "per_options": "chain per option count",
    "full": "chain per option count + free-form choice",
}
MEASURES = ("escalation_pct", "precision", "recall", "quality_pct", "savings_pct")


def summarise(data: Data, items: list[dict[str, Any]], cache: dict[Any, Outcome]) -> dict[str, Any]:
    chosen = Counter(item["policy"] for item in items)
    modal, count = chosen.most_common(1)[0]
    return {
        "seeds": len(items),
        "held_out_mean": {
            key: float(np.mean([item[key] for item in items if item[key] is not None]))
            for key in MEASURES
        },
        "held_out_min": {
            key: float(np.min([item[key] for item in items]))
            for key in ("quality_pct", "savings_pct")
        },
        "modal_policy": modal.describe(),
        "modal_policy_models": modal.as_dict(),
        "modal_policy_chosen": f"{count}/{len(items)} seeds",
        "modal_policy_all_rows": metrics(data, combine(data, modal, cache)),
        "per_seed": [
            {
                **{k: v for k, v in item.items() if k != "policy"},
                "policy": item["policy"].describe(),
            }
            for item in items
        ],
    }


def held_out_runs(data: Data, search: Search, seeds: int, floor: float) -> dict[str, Any]:
    """Tune on one half and score on the other, for ``seeds`` splits.

    Objectives: ``floor`` (most savings at >= floor of flagship quality on the tuning
    half) and ``match`` (most savings at >= the reference's quality on the tuning half).
    """
    cache: dict[Any, Outcome] = {}
    fixed = {name: combine(data, policy, cache) for name, (_, policy) in FIXED.items()}
    runs: dict[str, list[dict[str, Any]]] = {}
    for seed in range(seeds):
        tune = split(data, seed)
        held = ~tune
        for name, outcome in fixed.items():
            runs.setdefault(name, []).append(
                {"seed": seed, "policy": FIXED[name][1], **metrics(data, outcome, held)}
            )
        reference_quality = metrics(data, fixed["reference"], tune)["quality_pct"] / 100
        for family in FAMILIES:
            for objective, target in (("floor", floor), ("match", reference_quality)):
                policy = search.best(tune, target, family)
                key = f"{family}/{objective}"
                if policy is None:
                    runs.setdefault(key, [])
                    continue
                outcome = combine(data, policy, cache)
                runs.setdefault(key, []).append(
                    {
                        "seed": seed,
                        "policy": policy,
                        "tune": metrics(data, outcome, tune),
                        **metrics(data, outcome, held),
                    }
                )
    summary: dict[str, Any] = {}
    reference_runs = runs["reference"]
    for key, items in runs.items():
        if not items:
            summary[key] = None
            continue
        summary[key] = summarise(data, items, cache)
        # Same split, same half: does it beat the reference on both counts?
        summary[key]["beats_reference_held_out"] = sum(
            mine["quality_pct"] >= ref["quality_pct"] and mine["savings_pct"] > ref["savings_pct"]
            for mine, ref in zip(items, reference_runs, strict=True)
        )
        summary[key]["meets_floor_held_out"] = sum(
            item["quality_pct"] >= 100 * floor - 1e-9 for item in items
        )
    return summary


def row_label(key: str, floor: float) -> str:
    if key in FIXED:
        return FIXED[key][0]
    family, objective = key.split("/")
    goal = f">= {100 * floor:g}% quality" if objective == "floor" else ">= reference quality"
    return f"tuned, {FAMILIES[family]}: {goal}"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--data", type=Path, default=DEFAULT_DATA / "routerbench" / "train.outcomes.jsonl"
    )
    parser.add_argument("--seeds", type=int, default=10, help="tuning/held-out splits")
    parser.add_argument(
        "--floor", type=float, default=0.99, help="quality to keep, fraction of flagship's"
    )
    parser.add_argument("--json", metavar="PATH", help="write every figure as JSON")
    args = parser.parse_args(argv)

    rows, dropped = load_rows(args.data)
    data = Data(rows)
    kinds = Counter("free-form" if r.labels is None else f"{len(r.labels)} options" for r in rows)
    print(f"{data.n} prompts ({dropped} left out: a model's answer missing); {dict(kinds)}")
    flag_q = data.quality[FLAGSHIP].mean()
    print(f"flagship {FLAGSHIP}: quality {flag_q:.3f}, ${data.cost[FLAGSHIP].sum():.2f} in all\n")

    single = single_model_rows(data)
    headers = [
        "first try",
        "signal",
        "escalated %",
        "precision",
        "recall",
        "quality %",
        "savings %",
    ]
    print("1. Each signal on one cheap first try (all rows, nothing tuned)")
    print(
        render_table(
            headers,
            [
                [
                    r["first_try"],
                    r["signal"],
                    r.get("escalation_pct"),
                    r.get("precision"),
                    r.get("recall"),
                    r.get("quality_pct"),
                    r.get("savings_pct") if "note" not in r else r["note"],
                ]
                for r in single
            ],
        )
    )

    search = Search(data)
    summary = held_out_runs(data, search, args.seeds, args.floor)
    print(
        f"\n2. Second opinions: tuned on half the rows (stratified by task), scored on the "
        f"other half; mean over {args.seeds} seeds, worst seed in brackets; 'wins': seeds "
        f"where it beats the reference on both quality and savings on the same half"
    )
    headers = ["policy", "escalated %", "precision", "recall", "quality %", "savings %"]
    table = []
    for key, s in summary.items():
        if s is None:
            table.append([row_label(key, args.floor), None, None, None, "not reachable", None])
            continue
        mean, low = s["held_out_mean"], s["held_out_min"]
        table.append(
            [
                row_label(key, args.floor),
                mean["escalation_pct"],
                mean["precision"],
                mean["recall"],
                f"{mean['quality_pct']:.1f} ({low['quality_pct']:.1f})",
                f"{mean['savings_pct']:.1f} ({low['savings_pct']:.1f})",
                f"{s['beats_reference_held_out']}/{s['seeds']}",
                f"{s['meets_floor_held_out']}/{s['seeds']}",
            ]
        )
    print(render_table([*headers, "wins", f">= {100 * args.floor:g}%"], table))
    print("\nMost chosen policy per row, and its figures on all rows (half seen in tuning):")
    full_rows = []
    for key, s in summary.items():
        if s is None:
            continue
        print(f"- {row_label(key, args.floor)} [{s['modal_policy_chosen']}]: {s['modal_policy']}")
        f = s["modal_policy_all_rows"]
        full_rows.append(
            [
                row_label(key, args.floor),
                f["escalation_pct"],
                f["precision"],
                f["recall"],
                f["quality_pct"],
                f["savings_pct"],
            ]
        )
    print()
    print(render_table(headers, full_rows))

    write_json(
        args.json,
        {
            "benchmark": "cascade_routerbench",
            "data": {
                "path": str(args.data),
                "citation": CITATION,
                "prompts": data.n,
                "left_out": dropped,
                "kinds": dict(kinds),
            },
            "flagship": FLAGSHIP,
            "floor": args.floor,
            "seeds": args.seeds,
            "single_model": single,
            "policies": summary,
            "machine": machine_info(),
            "libraries": library_versions(),
        },
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
