"""Would a model per exemplar beat a model per task? (issue 16's optional item, measured
before building it.)

On five seeded 70/30 splits of an outcomes file, with each row's true task as its intent
(no router: the comparison is of the two choices, not of the vote):

- **per task**: each task's mean quality and mean cost per model on the training part;
- **per exemplar**: each training prompt's quality per model estimated from its 20
  nearest training prompts of the same task (leave-one-out, similarity-weighted, gaps
  skipped), shrunk toward the task's mean with a prior worth ``alpha`` neighbours; a test
  prompt takes the model of its nearest training prompt in its task.

Both choose by the library's rule (``plans.choose_from_tables``' Lagrangian sweep, single
models only): the cheapest combination whose estimated quality over all training rows
reaches ``floor`` x the flagship's. The floor is swept and each split's best savings at a
quality target are read off the test half (the curve, as `eval outcomes` reads it); "at
0.98" is the fixed floor.

With ``--bound``, also the plans (cascades included when the file has answers) chosen per
task on **all** rows at each floor: what no per-task router can beat on this file, since
the choice has seen the very rows it is scored on.

    .venv/bin/python benchmarks/outcome_per_exemplar.py \
        --train ../shared/data/llmrouter9/train.outcomes.jsonl \
        --flagship llama-3.1-nemotron-51b-instruct
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from modeltriage.core.config import Scoring
from modeltriage.learn.outcome_data import OutcomeRow, read_outcomes_jsonl
from modeltriage.learn.planlearning import plan_models
from modeltriage.learn.plans import choose_plans
from modeltriage.learn.splits import seeded_split

FLOORS = np.round(np.arange(0.85, 1.08, 0.005), 3)
PRICES = np.concatenate([[0.0], np.geomspace(1e-3, 1e3, 300)])
TARGETS = (0.98, 0.994, 1.0)
TASK = float("inf")  # alpha: the task's mean alone


def allocate(
    est: np.ndarray, cost: np.ndarray, weight: np.ndarray, target: float, flag: int
) -> np.ndarray:
    """Per unit (a task or an exemplar), the model of the cheapest combination whose
    weighted estimated quality reaches ``target`` (a Lagrangian sweep, as the library's)."""
    unit = np.nansum(weight * cost[:, flag]) / max(np.nansum(weight * est[:, flag]), 1e-9)
    best: tuple[float, np.ndarray] | None = None
    rows = np.arange(len(est))
    for price in PRICES:
        value = np.where(np.isnan(est) | np.isnan(cost), -np.inf, price * unit * est - cost)
        pick = np.argmax(value, axis=1)
        quality, spent = np.sum(weight * est[rows, pick]), np.sum(weight * cost[rows, pick])
        if quality >= target and (best is None or spent < best[0]):
            best = (spent, pick)
    return np.full(len(est), flag) if best is None else best[1]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--train", type=Path, required=True)
    parser.add_argument("--flagship", required=True)
    parser.add_argument("--alphas", default="5,20,80,320", help="priors, in neighbours")
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--bound", action="store_true", help="also the in-sample per-task plans")
    args = parser.parse_args(argv)

    from modeltriage.cli.outcomes import cached_real_encoder

    rows: list[OutcomeRow] = [
        r for r in read_outcomes_jsonl(args.train) if args.flagship in r.outcomes
    ]
    models = sorted({m for r in rows for m in r.outcomes})
    flag = models.index(args.flagship)
    view = Scoring(long_text="tail").view
    vectors = cached_real_encoder().encode([view(r.text) for r in rows])
    vectors = vectors / np.linalg.norm(vectors, axis=1, keepdims=True)
    where = {r.id: i for i, r in enumerate(rows)}
    nan = float("nan")
    quality = np.array(
        [[r.outcomes[m].quality if m in r.outcomes else nan for m in models] for r in rows]
    )
    cost = np.array(
        [[r.outcomes[m].cost_usd if m in r.outcomes else nan for m in models] for r in rows]
    )
    tasks = sorted({str(r.task) for r in rows})
    alphas = [float(a) for a in args.alphas.split(",")] + [TASK]
    results: dict[tuple[float, float], list[tuple[float, float]]] = {}
    for seed in range(args.seeds):
        train, test = seeded_split(rows, 0.3, seed)
        tr = np.array([where[r.id] for r in train])
        te = np.array([where[r.id] for r in test])
        per_task = []
        for task in tasks:
            mine = tr[[str(rows[i].task) == task for i in tr]]
            in_test = np.array([str(rows[i].task) == task for i in te])
            sims = vectors[mine] @ vectors[mine].T
            np.fill_diagonal(sims, -np.inf)
            k = min(20, len(mine) - 1)
            near = np.argpartition(-sims, k - 1, axis=1)[:, :k]
            w = np.maximum(np.take_along_axis(sims, near, axis=1), 1e-6)[:, :, None]
            q = quality[mine][near]
            known = ~np.isnan(q)
            nearest = (
                np.argmax(vectors[te[in_test]] @ vectors[mine].T, axis=1) if in_test.any() else None
            )
            per_task.append(
                (mine, in_test, (np.where(known, q, 0) * w).sum(1), (w * known).sum(1), nearest)
            )
        for alpha in alphas:
            ests, costs, weights = [], [], []
            for mine, _, summed, total, _ in per_task:
                mean_q, mean_c = np.nanmean(quality[mine], 0), np.nanmean(cost[mine], 0)
                if alpha == TASK:
                    (
                        ests.append(mean_q[None]),
                        costs.append(mean_c[None]),
                        weights.append([len(mine)]),
                    )
                else:
                    ests.append((summed + alpha * mean_q) / (total + alpha))
                    costs.append(np.repeat(mean_c[None], len(mine), 0))
                    weights.append([1] * len(mine))
            est, cst = np.concatenate(ests), np.concatenate(costs)
            wt = np.concatenate([np.asarray(x, dtype=float) for x in weights])
            top = float(np.sum(wt * est[:, flag]))
            for floor in FLOORS:
                pick = allocate(est, cst, wt, floor * top, flag)
                picks, start = np.full(len(te), flag), 0
                for (_, in_test, _, _, nearest), e in zip(per_task, ests, strict=True):
                    chosen, start = pick[start : start + len(e)], start + len(e)
                    if nearest is not None:
                        picks[in_test] = chosen[0] if len(e) == 1 else chosen[nearest]
                share = np.nansum(quality[te, picks]) / np.nansum(quality[te, flag])
                saved = 1 - np.nansum(cost[te, picks]) / np.nansum(cost[te, flag])
                results.setdefault((alpha, float(floor)), []).append((share, saved))

    print("| choice | " + " | ".join(f"curve at >= {t:g}" for t in TARGETS) + " | at floor 0.98 |")
    print("|---|" + "---|" * (len(TARGETS) + 1))
    for alpha in alphas:
        cells = []
        for target in TARGETS:
            best = [
                max(
                    (
                        results[(alpha, float(f))][s][1]
                        for f in FLOORS
                        if results[(alpha, float(f))][s][0] >= target
                    ),
                    default=nan,
                )
                for s in range(args.seeds)
            ]
            never = int(np.isnan(best).sum())
            cells.append(
                f"{100 * np.nanmean(best):.1f}% ({100 * np.nanmin(best):.1f}%)"
                + (f", {never} never" if never else "")
            )
        fixed = np.array(results[(alpha, 0.98)])
        label = "per task" if alpha == TASK else f"per exemplar, alpha {alpha:g}"
        print(
            f"| {label} | "
            + " | ".join(cells)
            + f" | {100 * fixed[:, 0].mean():.1f}% ({100 * fixed[:, 0].min():.1f}%)"
            + f" at {100 * fixed[:, 1].mean():.1f}% |"
        )

    if args.bound:
        groups: dict[str, list[OutcomeRow]] = {}
        for r in rows:
            groups.setdefault(str(r.task), []).append(r)
        cheap, answers = plan_models(rows, args.flagship), any(r.responses for r in rows)
        print("\nin-sample per-task plans (all rows):")
        for floor in (0.95, 0.97, 0.98, 0.99, 0.994):
            choice = choose_plans(
                groups, cheap, args.flagship, floor=floor, candidates=10, answers=answers
            )
            plans = ", ".join(
                f"{g}: {p.kind} {'+'.join(p.models)}".rstrip()
                for g, p in sorted(choice.plans.items())
            )
            print(
                f"floor {floor}: {100 * choice.quality / choice.flagship_quality:.1f}% at "
                f"{100 * (1 - choice.cost / choice.flagship_cost):.1f}% savings ({plans})"
            )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
