#!/usr/bin/env python3
"""Out-of-scope detection on CLINC150: the floor calibrated on held-out exemplars, against
no floor and the shipped global floor, for plain nearest neighbour, the vote and the
adapter, on all of train and on 10 exemplars per intent; val and test.

Run from the repository root:

    .venv/bin/python benchmarks/clinc_oos.py --test PATH [--sets all,ten,cv] [--json out.json]

Method. Every text is embedded once with the default backend (onnx fp32) through
``learn.embedding_cache`` (an .npz under the cache directory, never in the repository),
so a second run embeds nothing. Each exemplar set goes through the library's build steps
(``core.adapter.train_adapter`` with the default ``AdapterSettings``, then
``core.out_of_scope.calibrate_floor`` with the default hold-out), FAISS IndexFlatIP, and
the vote of ``core.scoring`` vectorised. The floor of every ``reject_share`` comes from
the same held-out exemplars (one calibration fit, memoised). Nothing is chosen on val or
test: the default share was chosen on train alone (the ``cv`` set: a router built on 80%
of each train intent, routing the other 20% plus train's 100 out-of-scope rows, and the
near-miss variant with a quarter of the intents left out of the exemplars).

``--test``: CLINC150's test split as ``*.intents.jsonl`` (4,500 in scope + 1,000 out of
scope), converted from data_full.json of github.com/clinc/oos-eval (commit 828f809, the
one ../shared/data/clinc150 comes from); it is not in ../shared/data.

Data: CLINC150 (Larson et al., 2019), CC BY 3.0; never copied into the repository.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import CLINC_CITATION, DEFAULT_DATA, REPO, machine_info, render_table, write_json
from clinc_adapter import predict, scores

SHARES = (0.0, 0.01, 0.02, 0.03, 0.05, 0.1)
SHIPPED_MIN_SIMILARITY = 0.45  # intents/router.yaml before this change


@dataclass(frozen=True)
class Built:
    keys: np.ndarray
    labels: np.ndarray
    tops: np.ndarray  # held-out exemplars' top similarities (for every share's floor)
    seconds: float
    cpu_seconds: float  # CPU time of this process: on a loaded machine, nearer an idle wall time
    decay: float | None
    matrix: np.ndarray | None  # the adapter's, applied to queries


def build(encoder: Any, rows: Sequence[Any], adapter_on: bool) -> Built:
    """The library's build steps on ``rows`` (LabelledText of an exemplar set)."""
    from modeltriage.core.adapter import checked_fit, normalise_rows, train_adapter
    from modeltriage.core.config import AdapterSettings, OutOfScopeSettings
    from modeltriage.core.index import train_settings
    from modeltriage.core.out_of_scope import held_out_rows, top_similarities

    names = sorted({r.intent for r in rows})
    labels = np.array([names.index(r.intent) for r in rows])
    raw = normalise_rows(encoder.encode([r.text for r in rows]))
    started, cpu = time.perf_counter(), time.process_time()
    adapter, matrix = None, None
    settings = AdapterSettings(enabled=True)
    if adapter_on:
        adapter = train_adapter(raw, [r.intent for r in rows], train_settings(settings))
    oos = OutOfScopeSettings()
    # calibrate_floor's steps, keeping the held-out similarities for every share.
    held = held_out_rows(labels, oos.hold_out, oos.seed)
    keys, queries = raw[~held], raw[held]
    if adapter is not None:
        _, kept = np.unique(labels[~held], return_inverse=True)
        refit = train_settings(settings, adapter.weight_decay)
        matrix = checked_fit(keys, kept.astype(np.int64), refit).matrix
        keys, queries = normalise_rows(keys @ matrix), normalise_rows(queries @ matrix)
    tops = top_similarities(keys, queries)
    seconds, cpu = time.perf_counter() - started, time.process_time() - cpu
    indexed = raw if adapter is None else adapter.apply(raw)
    if adapter is None:
        return Built(indexed, labels, tops, seconds, cpu, None, None)
    return Built(indexed, labels, tops, seconds, cpu, adapter.weight_decay, adapter.matrix)


def evaluate(
    encoder: Any, built: Built, names: list[str], adapter: Any, rows: Sequence[Any], top_k: int
) -> dict[str, Any]:
    from modeltriage.core.out_of_scope import floor_at

    queries = encoder.encode([r.text for r in rows])
    if adapter is not None:
        queries = adapter(queries)
    pred, top = predict(built.keys, built.labels, queries, top_k)
    labels = [names[p] for p in pred]
    gold = [r.intent for r in rows]
    out: dict[str, Any] = {"none": scores(labels, gold)}
    out["shipped 0.45"] = scores(_floored(labels, top, SHIPPED_MIN_SIMILARITY), gold)
    for share in SHARES:
        floor = floor_at(built.tops, share)
        out[f"calibrated {share:g}"] = {
            "floor": floor,
            **scores(_floored(labels, top, floor), gold),
        }
    return out


def _floored(labels: list[str], top: np.ndarray, floor: float) -> list[str | None]:
    return [p if t >= floor else None for p, t in zip(labels, top, strict=True)]


def run_set(
    encoder: Any, exemplars: Sequence[Any], queries: dict[str, Sequence[Any]], top_k: int
) -> dict[str, Any]:
    """Plain nearest neighbour and the vote (one raw build), and the adapter with the vote."""
    from modeltriage.core.adapter import normalise_rows

    names = sorted({r.intent for r in exemplars})
    out: dict[str, Any] = {}
    raw = build(encoder, exemplars, adapter_on=False)
    adapted = build(encoder, exemplars, adapter_on=True)
    for policy, built, k in (
        ("plain nearest neighbour", raw, 1),
        (f"vote (top_k {top_k})", raw, top_k),
        (f"adapter + vote (top_k {top_k})", adapted, top_k),
    ):
        m = built.matrix
        apply = None if m is None else (lambda v, m=m: normalise_rows(v @ m))
        out[policy] = {
            "build_s": built.seconds,
            "build_cpu_s": built.cpu_seconds,
            "weight_decay": built.decay,
            **{q: evaluate(encoder, built, names, apply, rows, k) for q, rows in queries.items()},
        }
        print(f"  {policy}: done", file=sys.stderr, flush=True)
    return out


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--test", type=Path, help="CLINC150 test as *.intents.jsonl")
    parser.add_argument("--sets", default="all,ten,cv", help="all, ten, cv (comma-separated)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the 10-per-intent set")
    parser.add_argument("--json", metavar="PATH")
    args = parser.parse_args(argv)
    from modeltriage import load_intents
    from modeltriage.core.onnx_encoder import OnnxEncoder
    from modeltriage.learn.datasets import LabelledText, read_intents_jsonl
    from modeltriage.learn.embedding_cache import CachingEncoder, disk_store
    from modeltriage.learn.splits import split_by_intent

    top_k = load_intents(REPO / "intents").config.scoring.top_k
    train = read_intents_jsonl(args.data / "clinc150" / "train.intents.jsonl")
    val = read_intents_jsonl(args.data / "clinc150" / "val.intents.jsonl")
    test = [] if args.test is None else read_intents_jsonl(args.test)
    onnx = OnnxEncoder("onnx")
    encoder = CachingEncoder(onnx, store=disk_store(onnx.model_id))
    encoder.embed([r.text for r in train + val + test])
    in_scope = [r for r in train if r.intent is not None]
    ten = _per_intent(in_scope, 10, args.seed)
    evaluation = {"val": val, **({"test": test} if test else {})}
    kept, held = split_by_intent(in_scope, 0.2, seed=0)
    names = sorted({r.intent for r in in_scope if r.intent is not None})
    unseen = set(names[::4])
    near_held = [r if r.intent not in unseen else LabelledText(r.text, None) for r in held]
    train_oos = [r for r in train if r.intent is None]
    sets: dict[str, tuple[Sequence[Any], dict[str, Sequence[Any]]]] = {
        "all": (_per_intent(in_scope, None, 0), evaluation),
        "ten": (ten, evaluation),
        "cv": (_per_intent(kept, None, 0), {"train-cv": held + train_oos}),
        "cv-ten": (_per_intent(kept, 10, args.seed), {"train-cv": held + train_oos}),
        "cv-near": (
            _per_intent([r for r in kept if r.intent not in unseen], None, 0),
            {"train-cv near miss": near_held},
        ),
    }
    report: dict[str, Any] = {"machine": machine_info(), "data": CLINC_CITATION, "sets": {}}
    for name in args.sets.split(","):
        exemplars, queries = sets[name]
        print(f"{name}: {len(exemplars)} exemplars", file=sys.stderr, flush=True)
        report["sets"][name] = run_set(encoder, exemplars, queries, top_k)
        print_set(name, report["sets"][name])
        write_json(args.json, report)
    return 0


def _per_intent(rows: Sequence[Any], n: int | None, seed: int) -> list[Any]:
    """The exemplars a router built from ``rows`` gets (``eval intents``' own grouping:
    duplicates dropped), ``n`` per intent when given."""
    from modeltriage.learn.datasets import LabelledText, intents_from_labelled

    return [
        LabelledText(e.text, intent.name)
        for intent in intents_from_labelled(rows, per_intent=n, seed=seed)
        for e in intent.exemplars
    ]


def print_set(name: str, by_policy: dict[str, Any]) -> None:
    def pct(x: float) -> str:
        return f"{100 * x:.1f}"

    not_splits = ("build_s", "build_cpu_s", "weight_decay")
    for split in [k for k in next(iter(by_policy.values())) if k not in not_splits]:
        rows = []
        for policy, result in by_policy.items():
            for floor, r in result[split].items():
                label = floor if "floor" not in r else f"{floor} ({r['floor']:.3f})"
                rows.append(
                    [
                        policy,
                        label,
                        pct(r["in_scope"]),
                        pct(r["overall"]),
                        pct(r["oos_recall"]),
                        pct(r["oos_precision"]),
                        f"{result['build_s']:.0f} ({result['build_cpu_s']:.0f} CPU)",
                    ]
                )
        print(f"\n### {name}: {split}\n")
        print(
            render_table(
                [
                    "policy",
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
        sys.stdout.flush()


if __name__ == "__main__":
    sys.exit(main())
