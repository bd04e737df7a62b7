#!/usr/bin/env python3
"""The adapter on CLINC150: plain nearest neighbour, the vote, and the adapter, each on all
of train and on 10 exemplars per intent, with out-of-scope detection.

Run from the repository root:

    .venv/bin/python benchmarks/clinc_adapter.py [--seeds 0,1,2] [--json out.json]

Method. Every text is embedded once with the packaged encoder (all-MiniLM-L6-v2, torch)
and kept in an .npy cache under $MODELTRIAGE_CACHE_DIR (default ~/.cache/modeltriage).
Each policy is the library's own: ``build_in_memory`` (FAISS IndexFlatIP; with the adapter,
trained there, its shrinkage chosen by cross-validation over the exemplars) and
``policy.decide`` through ``Router.route_batch``. Nothing is chosen on val:

- in-scope accuracy: val's in-scope rows, no floor;
- floor "tuned": chosen like ``eval intents --tune-floor`` (the library's choice) on a
  held-out 20% of each train intent plus train's 100 out-of-scope rows, with a router
  built on the other 80% (or 10 per intent of it);
- floor "exemplars only": no out-of-scope rows at all: 5-fold held-out top similarities of
  the exemplars (each exemplar routed against the other folds), and the floor rejects
  what the lowest 5% of them would (``calibrated_floor``);
- near miss: a quarter of the intents (every 4th by name) removed from the exemplars; their
  val rows become out of scope, with the same two floors (the tuned one still sees only
  train's 100 out-of-scope rows, as a user would).

Data: CLINC150 (Larson et al., 2019), CC BY 3.0, read from ../shared/data; never copied.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import CLINC_CITATION, DEFAULT_DATA, REPO, machine_info, render_table, write_json

HOLD_OUT = 0.2
CALIBRATION_QUANTILE = 0.05


class CachedEncoder:
    """The packaged encoder's vectors of a fixed text list, from a disk cache."""

    def __init__(self, texts: Sequence[str]) -> None:
        from modeltriage import SentenceTransformerEncoder

        encoder = SentenceTransformerEncoder()
        self.model_id, self.dim = encoder.model_id, encoder.dim
        unique = list(dict.fromkeys(texts))
        digest = hashlib.sha256("\n".join(unique).encode()).hexdigest()[:16]
        base = Path(os.environ.get("MODELTRIAGE_CACHE_DIR", Path.home() / ".cache/modeltriage"))
        path = base / "benchmarks" / f"clinc-{digest}.npy"
        if path.exists():
            vectors = np.load(path)
        else:
            started = time.perf_counter()
            vectors = np.concatenate(
                [encoder.encode(unique[i : i + 512]) for i in range(0, len(unique), 512)]
            )
            print(f"embedded {len(unique)} texts in {time.perf_counter() - started:.0f}s")
            path.parent.mkdir(parents=True, exist_ok=True)
            np.save(path, vectors)
        self._rows = {text: i for i, text in enumerate(unique)}
        self._vectors = vectors.astype(np.float32)

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        return self._vectors[[self._rows[t] for t in texts]]


def calibrated_floor(encoder: CachedEncoder, intents: Sequence[Any], adapter: Any) -> float:
    """The floor from the exemplars alone: the CALIBRATION_QUANTILE of their 5-fold
    held-out top similarities (through ``adapter`` when given)."""
    from modeltriage.core.adapter import folds_of, held_out_top1

    texts = [e.text for i in intents for e in i.exemplars]
    names = [i.name for i in intents for _ in i.exemplars]
    _, labels = np.unique(names, return_inverse=True)
    x = encoder.encode(texts)
    fold = folds_of(labels.astype(np.int64), 5, seed=0)
    matrix = None if adapter is None else adapter.matrix
    sims = []
    for f in range(5):
        _, top, counted = held_out_top1(x, labels, fold, matrix, f)
        sims.append(top[counted])
    return float(np.quantile(np.concatenate(sims), CALIBRATION_QUANTILE))


def evaluate(
    encoder: CachedEncoder,
    config: Any,
    intents: Sequence[Any],
    tuning_intents: Sequence[Any],
    held: Sequence[Any],
    test: Sequence[Any],
) -> dict[str, Any]:
    """One policy on one exemplar set: accuracy, the two floors, build time."""
    from modeltriage import Router
    from modeltriage.core.intents import IntentSet
    from modeltriage.learn.evaluation import with_policy
    from modeltriage.learn.min_similarity import choose_min_similarity
    from modeltriage.router import route_all

    bare = with_policy(config, no_min_similarity=True).model_copy(
        update={"thresholds": config.thresholds.model_copy(update={"margin": None})}
    )
    started = time.perf_counter()
    router = Router.in_memory(IntentSet(config=bare, intents=tuple(intents)), encoder)
    build_s = time.perf_counter() - started
    decisions = route_all(router, [r.text for r in test])
    tuner = Router.in_memory(IntentSet(config=bare, intents=tuple(tuning_intents)), encoder)
    tuned = route_all(tuner, [r.text for r in held])
    tuned_floor = choose_min_similarity(
        [r.intent for r in held], [d.intent for d in tuned], [d.confidence for d in tuned]
    )
    floors = {
        "tuned": tuned_floor,
        "exemplars only": calibrated_floor(encoder, intents, router._index.adapter),
    }
    gold = [r.intent for r in test]
    out: dict[str, Any] = {"build_s": build_s, "adapter": router.manifest.adapter}
    ins = [g is not None for g in gold]
    out["in_scope_no_floor"] = float(
        np.mean([d.intent == g for d, g, i in zip(decisions, gold, ins, strict=True) if i])
    )
    for label, floor in floors.items():
        pred = [d.intent if d.confidence >= floor else None for d in decisions]
        out[label] = {"floor": floor, **scores(pred, gold)}
    return out


def scores(pred: Sequence[str | None], gold: Sequence[str | None]) -> dict[str, float]:
    p, g = np.array(pred, dtype=object), np.array(gold, dtype=object)
    oos, flagged = np.equal(g, None), np.equal(p, None)
    caught = float(np.sum(oos & flagged))
    return {
        "in_scope": float(np.mean(p[~oos] == g[~oos])),
        "overall": float(np.mean(p == g)),
        "oos_recall": caught / max(1.0, float(oos.sum())),
        "oos_precision": caught / max(1.0, float(flagged.sum())),
    }


def policies(config: Any) -> dict[str, Any]:
    from modeltriage.core.config import AdapterSettings, Scoring

    off, on = AdapterSettings(enabled=False), AdapterSettings()
    nn = Scoring(top_k=1, aggregation="max")
    vote = config.scoring
    return {
        "plain nearest neighbour": config.model_copy(update={"scoring": nn, "adapter": off}),
        f"vote (top_k {vote.top_k})": config.model_copy(update={"adapter": off}),
        "adapter + nearest neighbour": config.model_copy(update={"scoring": nn, "adapter": on}),
        f"adapter + vote (top_k {vote.top_k}, the default)": config.model_copy(
            update={"adapter": on}
        ),
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--seeds", default="0,1,2", help="seeds of the 10-per-intent sets")
    parser.add_argument("--json", metavar="PATH")
    args = parser.parse_args(argv)
    from modeltriage import load_intents
    from modeltriage.learn.datasets import intents_from_labelled, read_intents_jsonl
    from modeltriage.learn.splits import split_by_intent

    config = load_intents(REPO / "intents").config
    train = read_intents_jsonl(args.data / "clinc150" / "train.intents.jsonl")
    val = read_intents_jsonl(args.data / "clinc150" / "val.intents.jsonl")
    encoder = CachedEncoder([r.text for r in train + val])
    kept, held = split_by_intent(train, HOLD_OUT, seed=0)
    names = sorted({r.intent for r in train if r.intent is not None})
    unseen = set(names[::4])
    near_val = [r if r.intent not in unseen else type(r)(r.text, None) for r in val]
    near_train = [r for r in train if r.intent not in unseen]
    near_kept, near_held = split_by_intent(near_train, HOLD_OUT, seed=0)
    seeds = [int(s) for s in args.seeds.split(",") if s.strip()]
    report: dict[str, Any] = {"machine": machine_info(), "data": CLINC_CITATION, "sets": {}}
    sets: dict[str, list[tuple[Any, Any, Any, Any, Any]]] = {
        "all train": [(intents_from_labelled(train), intents_from_labelled(kept), held, val)],
        "10 per intent": [
            (
                intents_from_labelled(train, per_intent=10, seed=s),
                intents_from_labelled(kept, per_intent=10, seed=s),
                held,
                val,
            )
            for s in seeds
        ],
        "near miss (all train, a quarter of intents unseen)": [
            (intents_from_labelled(near_train), intents_from_labelled(near_kept), near_held, near_val)
        ],
    }
    for set_name, runs in sets.items():
        for policy, policy_config in policies(config).items():
            results = [evaluate(encoder, policy_config, *run) for run in runs]
            report["sets"].setdefault(set_name, {})[policy] = _mean(results)
            print(f"{set_name} / {policy}: done", file=sys.stderr, flush=True)
    print_tables(report)
    write_json(args.json, report)
    return 0


def _mean(results: list[dict[str, Any]]) -> dict[str, Any]:
    first = results[0]
    out: dict[str, Any] = {}
    for key, value in first.items():
        if isinstance(value, dict):
            out[key] = _mean([r[key] for r in results])
        elif isinstance(value, float):
            out[key] = float(np.mean([r[key] for r in results]))
        else:
            out[key] = value
    out["runs"] = len(results)
    return out


def print_tables(report: dict[str, Any]) -> None:
    def pct(x: float) -> str:
        return f"{100 * x:.1f}"

    for set_name, by_policy in report["sets"].items():
        rows = []
        for policy, r in by_policy.items():
            for floor in ("tuned", "exemplars only"):
                f = r[floor]
                rows.append(
                    [
                        policy,
                        pct(r["in_scope_no_floor"]),
                        f"{floor} {f['floor']:.3f}",
                        pct(f["in_scope"]),
                        pct(f["overall"]),
                        pct(f["oos_recall"]),
                        pct(f["oos_precision"]),
                        f"{r['build_s']:.1f}",
                    ]
                )
        print(f"\n### {set_name} (CLINC150 val; mean of {r['runs']} run(s))\n")
        print(
            render_table(
                [
                    "policy",
                    "in-scope, no floor",
                    "floor",
                    "in-scope",
                    "overall",
                    "OOS recall",
                    "OOS precision",
                    "build s",
                ],
                rows,
            )
        )


if __name__ == "__main__":
    sys.exit(main())
