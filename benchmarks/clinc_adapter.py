#!/usr/bin/env python3
"""The adapter on CLINC150: plain nearest neighbour, the vote, and the adapter, each on all
of train and on 10 exemplars per intent, with out-of-scope detection.

Run from the repository root:

    .venv/bin/python benchmarks/clinc_adapter.py [--seeds 0,1,2] [--json out.json]

Method. Every text is embedded once with the packaged encoder (all-MiniLM-L6-v2, torch)
and kept in an .npy cache under $MODELTRIAGE_CACHE_DIR (default ~/.cache/modeltriage).
Each policy uses the library's own pieces: ``core.adapter.train_adapter`` with the default
``AdapterSettings`` (its weight decay chosen by cross-validation over the exemplars), a
FAISS IndexFlatIP, and the vote of ``core.scoring`` vectorised (``predict``: a call of
``policy.decide`` per row is ten times slower on a loaded machine). Nothing is chosen on
val:

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


def predict(
    keys: np.ndarray, key_labels: np.ndarray, queries: np.ndarray, top_k: int
) -> tuple[np.ndarray, np.ndarray]:
    """(predicted intent index, top similarity) per query: the library's vote
    (``core.scoring``: weights exp((s - best) / 0.05) summed per intent over the top_k
    exemplars), which with top_k 1 is the plain nearest neighbour. Vectorised: the same
    arithmetic as ``policy.decide`` without a Python call per row."""
    from modeltriage.core.scoring import VOTE_TEMPERATURE
    from modeltriage.core.vector_index import FaissIndex

    sims, ids = FaissIndex.from_vectors(keys).search(queries, top_k)
    weights = np.exp((sims - sims[:, :1]) / VOTE_TEMPERATURE)
    votes = np.zeros((queries.shape[0], int(key_labels.max()) + 1))
    for j in range(sims.shape[1]):
        np.add.at(votes, (np.arange(queries.shape[0]), key_labels[ids[:, j]]), weights[:, j])
    return votes.argmax(axis=1), sims[:, 0].astype(np.float64)


def evaluate(
    encoder: CachedEncoder,
    policy: tuple[int, bool],
    intents: Sequence[Any],
    tuning_intents: Sequence[Any],
    held: Sequence[Any],
    test: Sequence[Any],
) -> dict[str, Any]:
    """One policy (top_k, adapter on) on one exemplar set: accuracy, the two floors, and
    the adapter's training time (cross-validation included; embedding excluded)."""
    from modeltriage.core.adapter import train_adapter
    from modeltriage.core.config import AdapterSettings
    from modeltriage.core.index import train_settings
    from modeltriage.learn.min_similarity import choose_min_similarity

    top_k, adapter_on = policy
    names = sorted({i.name for i in intents} | {i.name for i in tuning_intents})
    index = {name: j for j, name in enumerate(names)}

    def run(exemplar_set: Sequence[Any], rows: Sequence[Any]) -> tuple[Any, ...]:
        texts = [e.text for i in exemplar_set for e in i.exemplars]
        labels = [i.name for i in exemplar_set for _ in i.exemplars]
        keys, queries = encoder.encode(texts), encoder.encode([r.text for r in rows])
        started = time.perf_counter()
        adapter = None
        if adapter_on:
            adapter = train_adapter(keys, labels, train_settings(AdapterSettings()))
            keys, queries = adapter.apply(keys), adapter.apply(queries)
        seconds = time.perf_counter() - started
        pred, top = predict(keys, np.array([index[n] for n in labels]), queries, top_k)
        return [names[p] for p in pred], top, seconds, adapter

    pred, top, build_s, adapter = run(intents, test)
    held_pred, held_top, _, _ = run(tuning_intents, held)
    floors = {
        "tuned": choose_min_similarity([r.intent for r in held], held_pred, held_top.tolist()),
        "exemplars only": calibrated_floor(encoder, intents, adapter),
    }
    gold = [r.intent for r in test]
    out: dict[str, Any] = {
        "build_s": build_s,
        "weight_decay": None if adapter is None else adapter.weight_decay,
        "in_scope_no_floor": float(
            np.mean([p == g for p, g in zip(pred, gold, strict=True) if g is not None])
        ),
    }
    for label, floor in floors.items():
        final = [p if t >= floor else None for p, t in zip(pred, top, strict=True)]
        out[label] = {"floor": floor, **scores(final, gold)}
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


def policies(config: Any) -> dict[str, tuple[int, bool]]:
    """name: (top_k, adapter on)."""
    k = config.scoring.top_k
    return {
        "plain nearest neighbour": (1, False),
        f"vote (top_k {k})": (k, False),
        "adapter + nearest neighbour": (1, True),
        f"adapter + vote (top_k {k}, the default)": (k, True),
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--seeds", default="0,1,2", help="seeds of the 10-per-intent sets")
    parser.add_argument(
        "--skip", default="", help="comma-separated policies to leave out (by name prefix)"
    )
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
            (
                intents_from_labelled(near_train),
                intents_from_labelled(near_kept),
                near_held,
                near_val,
            )
        ],
    }
    for set_name, runs in sets.items():
        for policy, policy_config in policies(config).items():
            if any(policy.startswith(p) for p in args.skip.split(",") if p):
                continue
            results = [evaluate(encoder, policy_config, *run) for run in runs]
            report["sets"].setdefault(set_name, {})[policy] = _mean(results)
            print(f"{set_name} / {policy}: done", file=sys.stderr, flush=True)
        print_tables({"sets": {set_name: report["sets"][set_name]}})
        sys.stdout.flush()
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
