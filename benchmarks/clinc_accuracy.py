#!/usr/bin/env python3
"""Accuracy of modeltriage's routing policy on CLINC150, and min_similarity for the shipped intents.

Run from the repository root:

    .venv/bin/python benchmarks/clinc_accuracy.py [--per-intent 10] [--seeds 0,1,2]
        [--json out.json]

Method. Texts are embedded ONCE with the real encoder (all-MiniLM-L6-v2) and each query
set is searched ONCE (top 50, FAISS IndexFlatIP, as the router does). Every policy
variant is then evaluated in pure Python by calling modeltriage's own
``policy.decide()`` on the top-k slice of the neighbours (thresholds disabled, so it
returns the best intent and the margin), and the thresholds are swept in numpy:

- in-scope accuracy: predicted intent == gold over the 3,000 in-scope val rows, no
  rejection (so it ranks aggregations and top_k alone);
- with a ``min_similarity`` threshold (top-1 cosine below it = no_match = predicted
  out-of-scope): overall accuracy over all 3,100 val rows with out-of-scope as a class,
  OOS recall and precision, and in-scope accuracy (rejected in-scope rows count wrong);
- min_similarity is chosen two ways: on val itself (optimistic) and on a held-out split of
  train (20% of each intent's train rows + train's 100 out-of-scope rows), then applied
  to val (honest);
- the same with low margin also treated as out-of-scope (min_similarity and margin swept jointly).

Exemplar sets: all of train (15,000), and ``--per-intent N`` sampled per intent (several
seeds, averaged). Plain top-1 nearest neighbour (aggregation max, top_k 1) is the baseline.

Last, the shipped intents (``intents/``): leave-one-exemplar-out accuracy per policy and
the top-1 similarity of held-out exemplars versus off-domain CLINC150 val texts, as
evidence for their min_similarity (it depends on the data: CLINC's do not transfer).

Data: CLINC150 (Larson et al., 2019), CC BY 3.0, read from ../shared/data; never copied.
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import (
    CLINC_CITATION,
    DEFAULT_DATA,
    REPO,
    library_versions,
    machine_info,
    render_table,
    write_json,
)

AGGREGATIONS = ("max", "mean_top2", "vote")
SEARCH_K = 50
JOINT_MIN_SIMILARITIES = np.round(np.arange(0.0, 1.0001, 0.01), 4)
# Margins are in the aggregation's own units: cosine for max/mean_top2, a share of the
# softmax weight (0..1) for vote.
MARGINS = {
    "max": np.round(np.arange(0.0, 0.2001, 0.0025), 4),
    "mean_top2": np.round(np.arange(0.0, 0.2001, 0.0025), 4),
    "vote": np.round(np.arange(0.0, 1.0001, 0.0125), 4),
}
# CLINC150 intents that the shipped support intents plausibly cover (a judgement call):
# excluded from the "off-domain" texts used to read the shipped intents' min_similarity.
CLINC_OVERLAPPING_SHIPPED = frozenset(
    {
        "order",
        "order_status",
        "greeting",
        "goodbye",
        "thank_you",
        "are_you_a_bot",
        "how_old_are_you",
        "what_is_your_name",
        "where_are_you_from",
        "what_are_your_hobbies",
        "who_made_you",
        "who_do_you_work_for",
        "do_you_have_pets",
        "what_can_i_ask_you",
        "tell_joke",
        "fun_fact",
        "meaning_of_life",
        "change_user_name",
        "user_name",
        "card_declined",
        "account_blocked",
        "reset_settings",
        "pin_change",
        "redeem_rewards",
        "rewards_balance",
        "cancel",
        "spending_history",
        "transactions",
        "report_fraud",
    }
)


# --------------------------------------------------------------------------- data


@dataclass
class QuerySet:
    texts: list[str]
    gold: np.ndarray  # intent index, -1 for out-of-scope
    vectors: np.ndarray


@dataclass
class Prediction:
    """One policy variant on one query set, without any threshold."""

    pred: np.ndarray  # intent index
    margin: np.ndarray
    top1: np.ndarray  # similarity of the nearest exemplar (the router's confidence)


class Embeddings:
    """Embed each distinct text once."""

    def __init__(self, encoder: Any) -> None:
        self.encoder = encoder
        self.vectors: dict[str, np.ndarray] = {}

    def add(self, texts: Sequence[str]) -> None:
        todo = list(dict.fromkeys(t for t in texts if t not in self.vectors))
        if todo:
            for text, vec in zip(todo, self.encoder.encode(todo), strict=True):
                self.vectors[text] = vec

    def matrix(self, texts: Sequence[str]) -> np.ndarray:
        return np.ascontiguousarray(np.stack([self.vectors[t] for t in texts]), dtype=np.float32)


def split_train(rows: Sequence[Any], holdout: float, seed: int) -> tuple[list[Any], list[Any]]:
    """Per intent, hold out ``holdout`` of the in-scope rows; OOS rows go to the held-out.
    The library's split, so these figures and `modeltriage eval intents
    --tune-min-similarity` choose min_similarity on the same rows."""
    from modeltriage.learn.splits import split_by_intent

    return split_by_intent(rows, holdout, seed)


# --------------------------------------------------------------------------- policy


class Evaluator:
    """Search an exemplar set once, then evaluate policies with modeltriage's own decide()."""

    def __init__(self, intents: Sequence[Any], embeddings: Embeddings, base_config: Any) -> None:
        from modeltriage.core.index import exemplar_rows
        from modeltriage.core.vector_index import FaissIndex

        self.rows = exemplar_rows(intents)
        self.intents = {i.name: i for i in intents}
        self.base_config = base_config
        self.index = FaissIndex.from_vectors(embeddings.matrix([r.text for r in self.rows]))

    def neighbours(self, queries: QuerySet) -> list[list[Any]]:
        from modeltriage.core.index import neighbours_of

        return neighbours_of(self.rows, *self.index.search(queries.vectors, SEARCH_K))

    def predict(
        self, neighbours: list[list[Any]], aggregation: str, top_k: int, names: dict[str, int]
    ) -> Prediction:
        from modeltriage.core.config import Scoring, Thresholds
        from modeltriage.core.policy import decide

        config = self.base_config.model_copy(
            update={
                "thresholds": Thresholds(margin=None, min_similarity=None),
                "scoring": Scoring(top_k=top_k, aggregation=aggregation),
            }
        )
        pred, margin, top1 = [], [], []
        for nb in neighbours:
            verdict = decide(nb[:top_k], config, self.intents, 1)
            pred.append(names[verdict.intent])
            margin.append(verdict.margin)
            top1.append(verdict.confidence)
        return Prediction(
            np.array(pred), np.array(margin, dtype=np.float64), np.array(top1, dtype=np.float64)
        )


def metrics(pred: np.ndarray, reject: np.ndarray, gold: np.ndarray) -> dict[str, float | None]:
    """Accuracy with OOS as a class; ``reject`` marks rows predicted out-of-scope."""
    final = np.where(reject, -1, pred)
    oos = gold == -1
    caught = int(np.sum(reject & oos))
    flagged = int(np.sum(reject))
    return {
        "overall_acc": float(np.mean(final == gold)),
        "oos_recall": caught / max(1, int(oos.sum())),
        "oos_precision": None if flagged == 0 else caught / flagged,
        "in_scope_acc": float(np.mean(final[~oos] == gold[~oos])),
        "rejected_in_scope": float(np.mean(reject[~oos])),
    }


def _median_choice(values: np.ndarray) -> int:
    return int(values[len(values) // 2])


def best_min_similarity(p: Prediction, gold: np.ndarray) -> float:
    """min_similarity maximising overall accuracy; the middle of a tied plateau. The
    library's choice (`eval intents --tune-min-similarity`), on intent indices."""
    from modeltriage.learn.min_similarity import choose_min_similarity

    labels = [None if g == -1 else str(g) for g in gold.tolist()]
    predicted = [str(x) for x in p.pred.tolist()]
    return choose_min_similarity(labels, predicted, p.top1.tolist())


def best_min_similarity_margin(
    p: Prediction, gold: np.ndarray, aggregation: str
) -> tuple[float, float]:
    """(min_similarity, margin) maximising overall accuracy; ties: smallest margin, middle
    min_similarity."""
    oos = gold == -1
    correct = p.pred == gold
    margins = MARGINS[aggregation]
    below_threshold = p.top1[None, :] < JOINT_MIN_SIMILARITIES[:, None]  # F x N
    best = (-1.0, 0.0, 0.0)
    for m in margins:
        reject = below_threshold | (p.margin < m)[None, :]
        acc = np.where(reject, oos[None, :], correct[None, :]).mean(axis=1)
        top = acc.max()
        if top > best[0] + 1e-12:
            ties = np.flatnonzero(acc >= top - 1e-12)
            best = (float(top), float(JOINT_MIN_SIMILARITIES[_median_choice(ties)]), float(m))
    return best[1], best[2]


def evaluate_variant(
    pv: Prediction,
    gold: np.ndarray,
    cal: Prediction | None,
    cal_gold: np.ndarray | None,
    aggregation: str,
) -> dict[str, Any]:
    out: dict[str, Any] = {}
    ins = gold != -1
    out["in_scope_acc_no_reject"] = float(np.mean(pv.pred[ins] == gold[ins]))
    f = best_min_similarity(pv, gold)
    out["val_floor"] = {"floor": f, **metrics(pv.pred, pv.top1 < f, gold)}
    fj, mj = best_min_similarity_margin(pv, gold, aggregation)
    out["val_floor_margin"] = {
        "floor": fj,
        "margin": mj,
        **metrics(pv.pred, (pv.top1 < fj) | (pv.margin < mj), gold),
    }
    if cal is not None and cal_gold is not None:
        f = best_min_similarity(cal, cal_gold)
        out["heldout_floor"] = {"floor": f, **metrics(pv.pred, pv.top1 < f, gold)}
        fj, mj = best_min_similarity_margin(cal, cal_gold, aggregation)
        out["heldout_floor_margin"] = {
            "floor": fj,
            "margin": mj,
            **metrics(pv.pred, (pv.top1 < fj) | (pv.margin < mj), gold),
        }
    return out


def mcnemar(a_ok: np.ndarray, b_ok: np.ndarray) -> dict[str, Any]:
    """Exact two-sided McNemar test on paired correctness."""
    b = int(np.sum(a_ok & ~b_ok))
    c = int(np.sum(~a_ok & b_ok))
    n = b + c
    if n == 0:
        return {"only_a_right": b, "only_b_right": c, "p": 1.0}
    tail = sum(math.comb(n, i) for i in range(min(b, c) + 1)) / 2**n
    return {"only_a_right": b, "only_b_right": c, "p": min(1.0, 2 * tail)}


# --------------------------------------------------------------------------- runs


def run_exemplar_set(
    label: str,
    val_intents: Sequence[Any],
    cal_intents: Sequence[Any],
    val: QuerySet,
    cal: QuerySet,
    embeddings: Embeddings,
    config: Any,
    names: dict[str, int],
    top_ks: Sequence[int],
) -> dict[str, Any]:
    t0 = time.perf_counter()
    val_eval = Evaluator(val_intents, embeddings, config)
    val_nb = val_eval.neighbours(val)
    if cal_intents is val_intents:
        cal_eval, cal_nb = val_eval, val_eval.neighbours(cal)
    else:
        cal_eval = Evaluator(cal_intents, embeddings, config)
        cal_nb = cal_eval.neighbours(cal)
    variants: dict[str, Any] = {}
    correct: dict[str, np.ndarray] = {}
    for aggregation in AGGREGATIONS:
        for k in top_ks:
            pv = val_eval.predict(val_nb, aggregation, k, names)
            pc = cal_eval.predict(cal_nb, aggregation, k, names)
            key = f"{aggregation} k={k}"
            variants[key] = {
                "aggregation": aggregation,
                "top_k": k,
                **evaluate_variant(pv, val.gold, pc, cal.gold, aggregation),
            }
            correct[key] = pv.pred[val.gold != -1] == val.gold[val.gold != -1]
    print(
        f"  {label}: {len(val_eval.rows)} exemplars, {len(variants)} variants in "
        f"{time.perf_counter() - t0:.1f}s",
        file=sys.stderr,
    )
    return {"exemplars": len(val_eval.rows), "variants": variants, "_correct": correct}


def average_runs(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Mean of every numeric field over seeds; in-scope accuracy also gets its sd."""

    def mean_of(values: list[Any]) -> Any:
        if isinstance(values[0], dict):
            return {k: mean_of([v[k] for v in values]) for k in values[0]}
        nums = [v for v in values if isinstance(v, (int, float)) and not isinstance(v, bool)]
        if len(nums) == len(values):
            return float(np.mean(nums))
        return values[0] if all(v == values[0] for v in values) else None

    out = mean_of([{k: v for k, v in r.items() if k != "_correct"} for r in runs])
    for key, variant in out["variants"].items():
        accs = [r["variants"][key]["in_scope_acc_no_reject"] for r in runs]
        variant["in_scope_acc_sd"] = float(np.std(accs, ddof=1)) if len(accs) > 1 else 0.0
        variant["aggregation"] = runs[0]["variants"][key]["aggregation"]
        variant["top_k"] = runs[0]["variants"][key]["top_k"]
    out["seeds"] = len(runs)
    return out


def pct(x: float | None) -> str:
    return "-" if x is None else f"{100 * x:.1f}"


def print_set(label: str, result: dict[str, Any]) -> None:
    """The tables of one exemplar set."""
    # Over 80 lines: a report section printed top to bottom, in the order of the
    # published tables; this script is run by hand against data not in the repository.
    variants = result["variants"]
    seeds = result.get("seeds", 1)
    title = f"\n## {label}: {result['exemplars']:.0f} exemplars"
    print(title + (f" (mean of {seeds} seeds)" if seeds > 1 else ""))
    print(
        "In-scope accuracy (no rejection), and the min_similarity floor chosen on val "
        "(optimistic) and on held-out train (honest), applied to val. Percent."
    )
    rows = []
    for key, v in variants.items():
        vf, hf = v["val_floor"], v.get("heldout_floor", {})
        acc = pct(v["in_scope_acc_no_reject"])
        if seeds > 1:
            acc += f" ±{100 * v['in_scope_acc_sd']:.1f}"
        rows.append(
            [
                key,
                acc,
                f"{vf['floor']:.3f}",
                pct(vf["overall_acc"]),
                pct(vf["oos_recall"]),
                pct(vf["oos_precision"]),
                pct(vf["in_scope_acc"]),
                f"{hf.get('floor', float('nan')):.3f}",
                pct(hf.get("overall_acc")),
                pct(hf.get("oos_recall")),
                pct(hf.get("oos_precision")),
                pct(hf.get("in_scope_acc")),
            ]
        )
    print(
        render_table(
            [
                "policy",
                "in-scope acc",
                "val floor",
                "overall",
                "OOS R",
                "OOS P",
                "in-sc@floor",
                "held-out floor",
                "overall",
                "OOS R",
                "OOS P",
                "in-sc@floor",
            ],
            rows,
        )
    )
    print("\nSame, rejecting low margin too (floor and margin swept jointly):")
    rows = []
    for key, v in variants.items():
        vj, hj = v["val_floor_margin"], v.get("heldout_floor_margin", {})
        rows.append(
            [
                key,
                f"{vj['floor']:.2f}/{vj['margin']:.4f}",
                pct(vj["overall_acc"]),
                pct(vj["oos_recall"]),
                pct(vj["oos_precision"]),
                pct(vj["in_scope_acc"]),
                f"{hj.get('floor', float('nan')):.2f}/{hj.get('margin', float('nan')):.4f}",
                pct(hj.get("overall_acc")),
                pct(hj.get("oos_recall")),
                pct(hj.get("oos_precision")),
                pct(hj.get("in_scope_acc")),
            ]
        )
    print(
        render_table(
            [
                "policy",
                "val floor/margin",
                "overall",
                "OOS R",
                "OOS P",
                "in-sc@",
                "held-out floor/margin",
                "overall",
                "OOS R",
                "OOS P",
                "in-sc@",
            ],
            rows,
        )
    )


def summarise_winner(
    result: dict[str, Any], label: str, correct: dict[str, np.ndarray] | None
) -> dict[str, Any]:
    variants = result["variants"]
    base_key = "max k=1"
    best_per_agg = {}
    for aggregation in AGGREGATIONS:
        keys = [k for k, v in variants.items() if v["aggregation"] == aggregation]
        best_per_agg[aggregation] = max(keys, key=lambda k: variants[k]["in_scope_acc_no_reject"])
    winner = max(best_per_agg.values(), key=lambda k: variants[k]["in_scope_acc_no_reject"])
    honest = max(variants, key=lambda k: variants[k]["heldout_floor"]["overall_acc"])
    lines = [f"{label}:"]
    for aggregation, key in best_per_agg.items():
        v = variants[key]
        gain = v["in_scope_acc_no_reject"] - variants[base_key]["in_scope_acc_no_reject"]
        lines.append(
            f"  best {aggregation:9s} = {key:15s} in-scope {pct(v['in_scope_acc_no_reject'])}%"
            f" ({100 * gain:+.1f}"
            f" pts vs top-1 NN), held-out-floor overall {pct(v['heldout_floor']['overall_acc'])}%"
        )
    summary: dict[str, Any] = {
        "best_per_aggregation": best_per_agg,
        "winner_in_scope": winner,
        "winner_heldout_overall": honest,
    }
    if correct is not None:
        test = mcnemar(correct[winner], correct[base_key])
        summary["mcnemar_winner_vs_top1"] = test
        lines.append(
            f"  {winner} vs top-1 NN on in-scope rows: right only with {winner}: "
            f"{test['only_a_right']}, only with top-1: {test['only_b_right']}, "
            f"McNemar p={test['p']:.2g}"
        )
    lines.append(
        f"  best overall accuracy with the held-out floor: {honest} "
        f"({pct(variants[honest]['heldout_floor']['overall_acc'])}%)"
    )
    print("\n".join(lines))
    return summary


CASCADE_MARGINS = {
    "max": (0.01, 0.02, 0.03, 0.05),
    "mean_top2": (0.01, 0.02, 0.03, 0.05),
    "vote": (0.1, 0.2, 0.3, 0.5),
}
CASCADE_POLICIES = (("max", 10), ("mean_top2", 10), ("mean_top2", 20), ("vote", 10), ("vote", 20))


def cascade_rows(
    correct: np.ndarray, margin: np.ndarray, aggregation: str
) -> list[dict[str, float]]:
    """Margin used as the router uses it (cascade to the flagship, not rejection): share
    cascaded and accuracy of the rest, for a few thresholds in the aggregation's units."""
    out = []
    for m in CASCADE_MARGINS[aggregation]:
        low = margin < m
        out.append(
            {
                "margin": m,
                "cascaded": float(np.mean(low)),
                "acc_kept": float(np.mean(correct[~low])) if (~low).any() else float("nan"),
                "acc_cascaded": float(np.mean(correct[low])) if low.any() else float("nan"),
            }
        )
    return out


def print_cascade(title: str, table: dict[str, list[dict[str, float]]]) -> None:
    print(f"\n{title}")
    print(
        render_table(
            ["policy", "margin", "cascaded", "acc of kept", "acc of cascaded"],
            [
                [
                    key,
                    f"{r['margin']:g}",
                    pct(r["cascaded"]),
                    pct(r["acc_kept"]),
                    pct(r["acc_cascaded"]),
                ]
                for key, rows in table.items()
                for r in rows
            ],
        )
    )


def min_similarity_curve(
    p: Prediction, gold: np.ndarray, thresholds: Sequence[float]
) -> list[dict[str, Any]]:
    # "floor" stays the key of the published reports.
    return [{"floor": f, **metrics(p.pred, p.top1 < f, gold)} for f in thresholds]


def shipped_section(
    intents_dir: Path,
    encoder: Any,
    embeddings: Embeddings,
    clinc_val: list[Any],
    top_ks: Sequence[int],
) -> dict[str, Any]:
    """Leave-one-exemplar-out on the shipped intents + off-domain similarity."""
    # Over 80 lines: a report section printed top to bottom, in the order of the
    # published tables; this script is run by hand against data not in the repository.
    from modeltriage import load_intents
    from modeltriage.core.config import Scoring, Thresholds
    from modeltriage.core.decision import Neighbour
    from modeltriage.core.index import exemplar_rows
    from modeltriage.core.policy import decide
    from modeltriage.core.vector_index import FaissIndex

    intent_set = load_intents(intents_dir)
    config = intent_set.config
    rows = exemplar_rows(intent_set.intents)
    intents = {i.name: i for i in intent_set.intents}
    embeddings.add([r.text for r in rows])
    vectors = embeddings.matrix([r.text for r in rows])
    index = FaissIndex.from_vectors(vectors)
    sims, ids = index.search(vectors, SEARCH_K + 1)
    loo = []  # neighbours of each exemplar among the others
    for j, (srow, irow) in enumerate(zip(sims, ids, strict=True)):
        loo.append(
            [
                Neighbour(
                    intent=rows[i].intent,
                    text=rows[i].text,
                    difficulty=rows[i].difficulty,
                    similarity=round(float(s), 6),
                )
                for s, i in zip(srow, irow, strict=True)
                if i >= 0 and i != j
            ][:SEARCH_K]
        )
    gold = [r.intent for r in rows]
    cascades: dict[str, list[dict[str, float]]] = {}
    result: dict[str, Any] = {
        "exemplars": len(rows),
        "intents": len(intents),
        "configured": config.scoring.model_dump() | config.thresholds.model_dump(),
        "loo": {},
    }
    table = []
    for aggregation in AGGREGATIONS:
        for k in top_ks:
            cfg = config.model_copy(
                update={
                    "thresholds": Thresholds(margin=None, min_similarity=None),
                    "scoring": Scoring(top_k=k, aggregation=aggregation),
                }
            )
            verdicts = [decide(nb[:k], cfg, intents, 1) for nb in loo]
            acc = float(np.mean([v.intent == g for v, g in zip(verdicts, gold, strict=True)]))
            margins = np.array([v.margin for v in verdicts])
            correct = np.array([v.intent == g for v, g in zip(verdicts, gold, strict=True)])
            low, unanimous = None, None
            if config.thresholds.margin is not None:
                below = margins < config.thresholds.margin
                low = float(np.mean(below))
                # Low margin although every neighbour is of the best intent.
                unanimous = int(
                    sum(
                        1 for v, b in zip(verdicts, below, strict=True) if b and v.runner_up is None
                    )
                )
            result["loo"][f"{aggregation} k={k}"] = {
                "accuracy": acc,
                "low_margin_share_at_config": low,
                "low_margin_with_no_runner_up": unanimous,
            }
            if (aggregation, k) in CASCADE_POLICIES:
                cascades[f"{aggregation} k={k}"] = cascade_rows(correct, margins, aggregation)
            table.append([f"{aggregation} k={k}", pct(acc), pct(low), unanimous])
    top1_in = np.array([nb[0].similarity for nb in loo])

    off = [r.text for r in clinc_val if r.intent not in CLINC_OVERLAPPING_SHIPPED]
    off_oos = [r.text for r in clinc_val if r.intent is None]
    embeddings.add(off)
    top1_off = index.search(embeddings.matrix(off), 1)[0][:, 0].astype(np.float64)
    top1_oos = index.search(embeddings.matrix(off_oos), 1)[0][:, 0].astype(np.float64)
    qs = [1, 5, 10, 25, 50, 75, 90, 95, 99]
    result["top1_similarity_percentiles"] = {
        "held_out_exemplar": dict(zip(qs, np.percentile(top1_in, qs).tolist(), strict=True)),
        "clinc_off_domain": dict(zip(qs, np.percentile(top1_off, qs).tolist(), strict=True)),
        "clinc_oos_only": dict(zip(qs, np.percentile(top1_oos, qs).tolist(), strict=True)),
    }
    thresholds = [0.30, 0.35, 0.40, 0.45, 0.50, 0.55, 0.60]
    result["floor_tradeoff"] = [
        {
            "floor": f,
            "exemplars_rejected": float(np.mean(top1_in < f)),
            "off_domain_accepted": float(np.mean(top1_off >= f)),
            "clinc_oos_accepted": float(np.mean(top1_oos >= f)),
        }
        for f in thresholds
    ]

    print(
        f"\n## Shipped intents ({intents_dir}): {len(rows)} exemplars, {len(intents)} intents; "
        f"configured {result['configured']}"
    )
    print(
        "Leave-one-exemplar-out accuracy (each exemplar routed against all the others), "
        "and the share that the configured margin would cascade. Percent."
    )
    print(
        render_table(
            ["policy", "LOO acc", f"margin<{config.thresholds.margin}", "of which unanimous"], table
        )
    )
    result["cascade"] = cascades
    print_cascade(
        "Shipped intents, leave-one-out: the margin as a cascade trigger "
        "(margins in cosine for max/mean_top2, in vote share for vote). Percent.",
        cascades,
    )
    print(
        "\nTop-1 cosine to the shipped exemplars: held-out exemplars (in-domain) vs "
        f"{len(off)} CLINC150 val texts from intents the shipped ones do not cover "
        f"(incl. its {len(off_oos)} OOS rows)"
    )
    print(
        render_table(
            ["percentile", "held-out exemplar", "CLINC off-domain", "CLINC OOS"],
            [
                [
                    q,
                    result["top1_similarity_percentiles"]["held_out_exemplar"][q],
                    result["top1_similarity_percentiles"]["clinc_off_domain"][q],
                    result["top1_similarity_percentiles"]["clinc_oos_only"][q],
                ]
                for q in qs
            ],
        )
    )
    print("\nFloor trade-off on the shipped intents (percent):")
    print(
        render_table(
            ["min_similarity", "exemplars rejected", "off-domain accepted", "CLINC OOS accepted"],
            [
                [
                    f"{r['floor']:.2f}",
                    pct(r["exemplars_rejected"]),
                    pct(r["off_domain_accepted"]),
                    pct(r["clinc_oos_accepted"]),
                ]
                for r in result["floor_tradeoff"]
            ],
        )
    )
    return result


def main(argv: Sequence[str] | None = None) -> int:
    # Over 80 lines: a report section printed top to bottom, in the order of the
    # published tables; this script is run by hand against data not in the repository.
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--data",
        type=Path,
        default=DEFAULT_DATA,
        help="folder holding clinc150/ (default: %(default)s)",
    )
    parser.add_argument("--intents", type=Path, default=REPO / "intents")
    parser.add_argument(
        "--per-intent",
        type=int,
        default=10,
        help="exemplars per intent of the sampled set (0 to skip)",
    )
    parser.add_argument("--seeds", default="0,1,2", help="seeds of the sampled set")
    parser.add_argument("--top-k", default="1,5,10,20,50", help="top_k values to evaluate")
    parser.add_argument(
        "--holdout",
        type=float,
        default=0.2,
        help="share of each intent's train rows held out to choose min_similarity",
    )
    parser.add_argument(
        "--no-shipped", action="store_true", help="skip the section on the shipped intents"
    )
    parser.add_argument("--json", metavar="PATH", help="also write the figures as JSON")
    args = parser.parse_args(argv)
    top_ks = [int(x) for x in args.top_k.split(",")]
    if max(top_ks) > SEARCH_K:
        parser.error(f"top_k is at most {SEARCH_K}")
    seeds = [int(x) for x in args.seeds.split(",") if x.strip()]

    from modeltriage import SentenceTransformerEncoder, load_intents
    from modeltriage.learn.datasets import intents_from_labelled, read_intents_jsonl

    started = time.perf_counter()
    config = load_intents(args.intents).config
    train = read_intents_jsonl(args.data / "clinc150" / "train.intents.jsonl")
    val_rows = read_intents_jsonl(args.data / "clinc150" / "val.intents.jsonl")
    kept, held = split_train(train, args.holdout, seed=0)

    all_intents = intents_from_labelled(train)
    kept_intents = intents_from_labelled(kept)
    names = {intent.name: j for j, intent in enumerate(all_intents)}

    print("loading encoder and embedding CLINC150 train + val once ...", file=sys.stderr)
    encoder = SentenceTransformerEncoder()
    embeddings = Embeddings(encoder)
    t0 = time.perf_counter()
    exemplar_texts = [e.text for i in all_intents for e in i.exemplars]
    embeddings.add(exemplar_texts + [r.text for r in val_rows] + [r.text for r in held])
    embed_s = time.perf_counter() - t0
    print(f"  embedded {len(embeddings.vectors)} texts in {embed_s:.0f}s", file=sys.stderr)

    def query_set(rows: Sequence[Any]) -> QuerySet:
        texts = [r.text for r in rows]
        gold = np.array([-1 if r.intent is None else names[r.intent] for r in rows])
        return QuerySet(texts, gold, embeddings.matrix(texts))

    val, cal = query_set(val_rows), query_set(held)
    report: dict[str, Any] = {
        "machine": machine_info(),
        "versions": library_versions(),
        "data": CLINC_CITATION,
        "val": {"in_scope": int(np.sum(val.gold != -1)), "oos": int(np.sum(val.gold == -1))},
        "heldout": {
            "in_scope": int(np.sum(cal.gold != -1)),
            "oos": int(np.sum(cal.gold == -1)),
            "share": args.holdout,
        },
        "embed_s": embed_s,
        "sets": {},
    }
    print(f"\nval: {report['val']}; held-out train for choosing floors: {report['heldout']}")

    full = run_exemplar_set(
        "all train", all_intents, kept_intents, val, cal, embeddings, config, names, top_ks
    )
    print_set(
        "All of train as exemplars (held-out floors chosen with an index of the other "
        f"{100 * (1 - args.holdout):.0f}% of train)",
        full,
    )
    summaries = {"all": summarise_winner(full, "all train", full["_correct"])}
    report["sets"]["all"] = {k: v for k, v in full.items() if k != "_correct"}

    # Floor curve of the baseline and the configured policy, all-train exemplars.
    ev = Evaluator(all_intents, embeddings, config)
    nb = ev.neighbours(val)
    curves = {}
    for aggregation, k in (("max", 1), (config.scoring.aggregation, config.scoring.top_k)):
        p = ev.predict(nb, aggregation, k, names)
        curves[f"{aggregation} k={k}"] = min_similarity_curve(
            p, val.gold, [0.3, 0.4, 0.5, 0.55, 0.6, 0.65, 0.7, 0.75, 0.8]
        )
    report["sets"]["all"]["floor_curves"] = curves
    key = f"{config.scoring.aggregation} k={config.scoring.top_k}"
    print(f"\nFloor curve on val, all-train exemplars, policy {key} (percent):")
    print(
        render_table(
            ["min_similarity", "overall", "OOS R", "OOS P", "in-scope acc", "in-scope rejected"],
            [
                [
                    f"{r['floor']:.2f}",
                    pct(r["overall_acc"]),
                    pct(r["oos_recall"]),
                    pct(r["oos_precision"]),
                    pct(r["in_scope_acc"]),
                    pct(r["rejected_in_scope"]),
                ]
                for r in curves[key]
            ],
        )
    )

    cascades = {}
    ins = val.gold != -1
    for aggregation, k in CASCADE_POLICIES:
        p = ev.predict(nb, aggregation, k, names)
        cascades[f"{aggregation} k={k}"] = cascade_rows(
            (p.pred == val.gold)[ins], p.margin[ins], aggregation
        )
    report["sets"]["all"]["cascade"] = cascades
    print_cascade(
        "CLINC150 val in-scope, all-train exemplars: the margin as a cascade trigger. Percent.",
        cascades,
    )

    if args.per_intent > 0 and seeds:
        runs = []
        for seed in seeds:
            sampled = intents_from_labelled(kept, per_intent=args.per_intent, seed=seed)
            runs.append(
                run_exemplar_set(
                    f"{args.per_intent}/intent seed {seed}",
                    sampled,
                    sampled,
                    val,
                    cal,
                    embeddings,
                    config,
                    names,
                    top_ks,
                )
            )
        avg = average_runs(runs)
        label = f"{args.per_intent} per intent"
        print_set(
            f"{label}, sampled from the {100 * (1 - args.holdout):.0f}% of train not held out", avg
        )
        summaries[label] = summarise_winner(
            avg,
            f"{label} (mean of {len(seeds)} seeds)",
            runs[0]["_correct"] if len(runs) == 1 else None,
        )
        diffs = {}
        for agg_key in avg["variants"]:
            d = [
                r["variants"][agg_key]["in_scope_acc_no_reject"]
                - r["variants"]["max k=1"]["in_scope_acc_no_reject"]
                for r in runs
            ]
            diffs[agg_key] = {"mean": float(np.mean(d)), "min": float(min(d)), "max": float(max(d))}
        avg["in_scope_diff_vs_top1_per_seed"] = diffs
        report["sets"][label] = avg
    report["summary"] = summaries

    if not args.no_shipped:
        report["shipped"] = shipped_section(args.intents, encoder, embeddings, val_rows, top_ks)

    report["total_s"] = time.perf_counter() - started
    print(f"\ntotal {report['total_s']:.0f}s; data: {CLINC_CITATION}")
    write_json(args.json, report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
