#!/usr/bin/env python3
"""Out-of-scope detection on CLINC150: the floor calibrated on held-out exemplars, against
no floor and the shipped global floor, for plain nearest neighbour, the vote and the
adapter, on all of train and on 10 exemplars per intent; val and test. The floor on the
top similarity ("calibrated <share>") and on the combined score of ``out_of_scope.score:
similarity+mahalanobis`` ("sim+maha <share>", core.oos_score), same shares.

Run from the repository root:

    .venv/bin/python benchmarks/clinc_oos.py --test PATH [--sets all,ten,cv] [--json out.json]
        [--encoder FINETUNED_DIR] [--write-exemplars DIR]
    .venv/bin/python benchmarks/clinc_oos.py --sets cv,cv-ten,cv-near \
        --sweep 1,5,10,20,40:0.02,0.05,0.1

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

``--encoder DIR``: the same rows with a fine-tuned encoder (``modeltriage finetune``),
run by the default backend as router.yaml's ``encoder.path`` runs it (exported to ONNX
on first use), its vectors cached like the packaged model's; the policies read
"finetune + ...", and the fine-tune's training seconds (its ``finetune.json``) go before
the build's. ``--write-exemplars DIR`` writes a set's exemplars (the ``ten`` set: 10 per
intent, ``--seed``) for ``modeltriage finetune --exemplars``. Fine-tuning on all train:
``--exemplars`` train.intents.jsonl itself (its out-of-scope rows are skipped).

``--sweep K,..:T,..``: instead of the policies above, the adapter + vote at every top_k
K and vote temperature T of the grid (weights exp((s - best) / T)), each with no floor
and with the default floor (router.yaml's ``out_of_scope`` defaults: the combined score
at reject_share 0.03), and per setting the mean over the sets run. One build and one
search (at the largest K) per set: the floor does not depend on the vote. Choose on
``--sets cv,cv-ten,cv-near`` (train only); only then run the chosen and the current
setting on ``--sets all,ten`` (val, and test with ``--test``).

``--test``: CLINC150's test split as ``*.intents.jsonl`` (4,500 in scope + 1,000 out of
scope), converted from data_full.json of github.com/clinc/oos-eval (commit 828f809, the
one ../shared/data/clinc150 comes from); it is not in ../shared/data.

Data: CLINC150 (Larson et al., 2019), CC BY 3.0; never copied into the repository.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
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
    # out_of_scope.score similarity+mahalanobis: the held-out exemplars' combined scores
    # (for every share's floor) and the Gaussians fitted on all exemplars, with the scale
    # (None when they cannot be fitted)
    combined: np.ndarray | None
    gaussians: Any


def build(encoder: Any, rows: Sequence[Any], adapter_on: bool) -> Built:
    """The library's build steps on ``rows`` (LabelledText of an exemplar set)."""
    from modeltriage.core.adapter import checked_fit, normalise_rows, train_adapter
    from modeltriage.core.config import AdapterSettings, OutOfScopeSettings
    from modeltriage.core.index import train_settings
    from modeltriage.core.oos_score import combined, fit_gaussians, scale_of
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
    # The combined score's steps (calibrate_floor's): Gaussians of the kept raw vectors,
    # the held-out exemplars' scale and scores; for serving, Gaussians of all of them.
    kept_gaussians, final = fit_gaussians(raw[~held], labels[~held]), fit_gaussians(raw, labels)
    values, gaussians = None, None
    if kept_gaussians is not None and final is not None:
        distances = kept_gaussians.distances(raw[held])
        scale = scale_of(tops, distances)
        if scale is not None:
            values, gaussians = combined(tops, distances, scale), final.with_scale(scale)
    seconds, cpu = time.perf_counter() - started, time.process_time() - cpu
    indexed = raw if adapter is None else adapter.apply(raw)
    decay = None if adapter is None else adapter.weight_decay
    matrix = None if adapter is None else adapter.matrix
    return Built(indexed, labels, tops, seconds, cpu, decay, matrix, values, gaussians)


def evaluate(
    encoder: Any, built: Built, names: list[str], adapter: Any, rows: Sequence[Any], top_k: int
) -> dict[str, Any]:
    from modeltriage.core.oos_score import combined
    from modeltriage.core.out_of_scope import floor_at

    raw = encoder.encode([r.text for r in rows])
    queries = raw if adapter is None else adapter(raw)
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
    if built.gaussians is None or built.combined is None:
        return out
    # The combined score: the same top similarity, plus the raw vector's distance.
    values = combined(top, built.gaussians.distances(raw), built.gaussians.scale)
    for share in SHARES:
        floor = floor_at(built.combined, share)
        out[f"sim+maha {share:g}"] = {
            "floor": floor,
            **scores(_floored(labels, values, floor), gold),
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


def parse_grid(spec: str) -> tuple[list[int], list[float]]:
    """``--sweep``'s "K,K,..:T,T,..": top_k values and vote temperatures."""
    ks, ts = spec.split(":")
    return [int(k) for k in ks.split(",")], [float(t) for t in ts.split(",")]


def vote(
    sims: np.ndarray, ids: np.ndarray, key_labels: np.ndarray, top_k: int, temperature: float
) -> np.ndarray:
    """The predicted intent index per row: core.scoring's vote over the first ``top_k``
    neighbours at ``temperature`` (ties to the lower index, as the library's to the name)."""
    s, i = sims[:, :top_k], ids[:, :top_k]
    weights = np.exp((s - s[:, :1]) / temperature)
    votes = np.zeros((s.shape[0], int(key_labels.max()) + 1))
    rows = np.repeat(np.arange(s.shape[0]), s.shape[1])
    np.add.at(votes, (rows, key_labels[i].ravel()), weights.ravel())
    return votes.argmax(axis=1)


def sweep_set(
    encoder: Any,
    exemplars: Sequence[Any],
    queries: dict[str, Sequence[Any]],
    grid: tuple[list[int], list[float]],
) -> dict[str, Any]:
    """``--sweep``: the adapter + vote at each (top_k, temperature) of ``grid``, with no
    floor ("none") and with the default one ("floor")."""
    from modeltriage.core.adapter import normalise_rows
    from modeltriage.core.config import OutOfScopeSettings
    from modeltriage.core.oos_score import combined
    from modeltriage.core.out_of_scope import floor_at
    from modeltriage.core.vector_index import FaissIndex

    names = sorted({r.intent for r in exemplars})
    built = build(encoder, exemplars, adapter_on=True)
    assert built.matrix is not None
    share = OutOfScopeSettings().reject_share
    index = FaissIndex.from_vectors(built.keys)
    ks, ts = grid
    out: dict[str, Any] = {"build_s": built.seconds, "weight_decay": built.decay}
    for split, rows in queries.items():
        raw = encoder.encode([r.text for r in rows])
        sims, ids = index.search(normalise_rows(raw @ built.matrix), max(ks))
        top = sims[:, 0].astype(np.float64)
        if built.gaussians is None or built.combined is None:
            values, floor = top, floor_at(built.tops, share)
        else:
            values = combined(top, built.gaussians.distances(raw), built.gaussians.scale)
            floor = floor_at(built.combined, share)
        gold = [r.intent for r in rows]
        results: dict[str, Any] = {}
        for k in ks:
            # With one neighbour the temperature changes nothing: one row.
            for t in ts[:1] if k == 1 else ts:
                labels = [names[p] for p in vote(sims, ids, built.labels, k, t)]
                results[f"{k}:{t:g}"] = {
                    "none": scores(labels, gold),
                    "floor": scores(_floored(labels, values, floor), gold),
                }
        out[split] = results
    return out


def print_sweep(report: dict[str, Any]) -> None:
    """One row per setting: each set's split with the default floor (in-scope, overall,
    OOS recall) and without (in-scope), then the means over the sets."""

    def pct(x: float) -> str:
        return f"{100 * x:.1f}"

    columns = [
        (name, split)
        for name, result in report.items()
        for split in result
        if split not in ("build_s", "weight_decay")
    ]
    settings = list(report[columns[0][0]][columns[0][1]])
    rows = []
    for setting in settings:
        k, t = setting.split(":")
        row: list[Any] = [k, "-" if k == "1" else t]
        cells = [report[name][split][setting] for name, split in columns]
        for cell in cells:
            f, n = cell["floor"], cell["none"]
            row.append(f"{pct(f['in_scope'])} / {pct(f['overall'])} / {pct(f['oos_recall'])}")
            row.append(pct(n["in_scope"]))
        row.append(pct(float(np.mean([c["floor"]["in_scope"] for c in cells]))))
        row.append(pct(float(np.mean([c["floor"]["overall"] for c in cells]))))
        row.append(pct(float(np.mean([c["none"]["in_scope"] for c in cells]))))
        rows.append(row)
    headers = ["top_k", "T"]
    for name, split in columns:
        headers += [f"{name} ({split}): in / overall / OOS, floor", "in, no floor"]
    headers += ["mean in, floor", "mean overall, floor", "mean in, no floor"]
    print(render_table(headers, rows))
    sys.stdout.flush()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--test", type=Path, help="CLINC150 test as *.intents.jsonl")
    parser.add_argument("--sets", default="all,ten,cv", help="all, ten, cv (comma-separated)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the 10-per-intent set")
    parser.add_argument(
        "--encoder",
        type=Path,
        metavar="DIR",
        help="a fine-tuned model directory (`modeltriage finetune`) to embed with instead "
        "of the packaged model (all and ten sets only)",
    )
    parser.add_argument(
        "--threads",
        type=int,
        help="onnxruntime threads while embedding (default: the library's); no reported "
        "figure depends on it: vectors are cached before any timing",
    )
    parser.add_argument(
        "--write-exemplars",
        type=Path,
        metavar="DIR",
        help="write each set's exemplars to DIR/<set>.intents.jsonl (to fine-tune on) and stop",
    )
    parser.add_argument(
        "--sweep",
        metavar="K,..:T,..",
        help="the adapter + vote at each top_k and vote temperature of the grid, with the "
        "default floor and without (e.g. 1,5,10,20,40:0.02,0.05,0.1)",
    )
    parser.add_argument(
        "--backend",
        choices=("onnx", "onnx-int8", "static"),
        default="onnx",
        help="the encoder backend: onnx (fp32, the vectors every other figure uses), "
        "onnx-int8 (the default backend of a router) or static (the token table distilled "
        "from the same weights)",
    )
    parser.add_argument("--json", metavar="PATH")
    args = parser.parse_args(argv)
    chosen = args.sets.split(",")
    if args.encoder is not None and not set(chosen) <= {"all", "ten"}:
        parser.error("--encoder: the cv sets route train rows, which a fine-tune on train saw")
    from modeltriage import load_intents
    from modeltriage.learn.datasets import LabelledText, read_intents_jsonl
    from modeltriage.learn.splits import split_by_intent

    top_k = load_intents(REPO / "intents").config.scoring.top_k
    train = read_intents_jsonl(args.data / "clinc150" / "train.intents.jsonl")
    val = read_intents_jsonl(args.data / "clinc150" / "val.intents.jsonl")
    test = [] if args.test is None else read_intents_jsonl(args.test)
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
    if args.write_exemplars is not None:
        for name in chosen:
            write_exemplars(args.write_exemplars / f"{name}.intents.jsonl", sets[name][0])
        return 0
    encoder, finetuned = _encoder(args.encoder, args.threads, args.backend)
    # Only the texts the chosen sets need: a fine-tuned model's vectors are not cached yet.
    encoder.embed(
        [
            r.text
            for name in chosen
            for rows in (sets[name][0], *sets[name][1].values())
            for r in rows
        ]
    )
    report: dict[str, Any] = {"machine": machine_info(), "data": CLINC_CITATION, "sets": {}}
    report["encoder"] = {"model_id": encoder.model_id, **finetuned}
    if args.sweep is not None:
        grid = parse_grid(args.sweep)
        for name in chosen:
            print(f"{name}: {len(sets[name][0])} exemplars", file=sys.stderr, flush=True)
            report["sets"][name] = sweep_set(encoder, *sets[name], grid)
            write_json(args.json, report)
        print_sweep(report["sets"])
        return 0
    for name in chosen:
        exemplars, queries = sets[name]
        print(f"{name}: {len(exemplars)} exemplars", file=sys.stderr, flush=True)
        result = run_set(encoder, exemplars, queries, top_k)
        if args.encoder is not None:
            # The fine-tune is part of the build: its training time goes with every row.
            result = {
                f"finetune + {policy}": {**r, "finetune_s": finetuned.get("train_s")}
                for policy, r in result.items()
            }
        report["sets"][name] = result
        print_set(name, result)
        write_json(args.json, report)
    return 0


def _encoder(
    model_dir: Path | None, threads: int | None, backend: str = "onnx"
) -> tuple[Any, dict[str, Any]]:
    """The backend (onnx fp32 unless asked) running the packaged model or, as
    ``encoder.path`` does, a fine-tuned one (exported on first use); onnx vectors cached
    on disk (the static backend's cost less to compute than to read). With a fine-tuned
    model, also its ``finetune.json``."""
    from modeltriage.core.onnx_encoder import OnnxEncoder
    from modeltriage.core.static_encoder import StaticEncoder
    from modeltriage.learn.embedding_cache import CachingEncoder, disk_store
    from modeltriage.learn.finetune import read_info

    info = None if model_dir is None else read_info(model_dir)
    finetuned = {} if info is None else {"path": str(model_dir), **asdict(info)}
    if backend == "static":
        return CachingEncoder(StaticEncoder(model_dir, export=True)), finetuned
    onnx = OnnxEncoder(
        "onnx-int8" if backend == "onnx-int8" else "onnx",
        model_dir,
        threads=threads,
        export=model_dir is not None or backend == "onnx-int8",
    )
    return CachingEncoder(onnx, store=disk_store(onnx.model_id)), finetuned


def write_exemplars(path: Path, rows: Sequence[Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8") as fh:
        for r in rows:
            fh.write(json.dumps({"text": r.text, "intent": r.intent}) + "\n")
    print(f"wrote {len(rows)} exemplars to {path}", file=sys.stderr)


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

    not_splits = ("build_s", "build_cpu_s", "weight_decay", "finetune_s")
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
                        _build(result),
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


def _build(result: dict[str, Any]) -> str:
    """Build seconds (this process's CPU seconds), after the fine-tune's training seconds."""
    build = f"{result['build_s']:.0f} ({result['build_cpu_s']:.0f} CPU)"
    finetune = result.get("finetune_s")
    return build if finetune is None else f"finetune {finetune:.0f} + {build}"


if __name__ == "__main__":
    sys.exit(main())
