#!/usr/bin/env python3
"""CLINC150 val accuracy of each encoder backend (torch, onnx, onnx-int8), in one run.

Run from the repository root:

    HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/backend_accuracy.py [--data DIR] [--json out.json]

Each backend routes the 3,100 val rows with a router whose exemplars are all 15,100 train
rows, min_similarity tuned on a held-out split of train (``evaluate_intents``, what
``modeltriage eval intents --tune-min-similarity`` runs). Same data, same config, same
code: only the encoder differs. The ONNX exports go to the user cache (built once).

Data: CLINC150 (Larson et al., 2019), CC BY 3.0, read from the shared data folder; never copied.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import DEFAULT_DATA, REPO, library_versions, machine_info, render_table, write_json


def data_dir(given: str | None) -> Path:
    for candidate in (given, DEFAULT_DATA, "/work/shared/data"):
        if candidate is not None and (Path(candidate) / "clinc150").is_dir():
            return Path(candidate)
    raise SystemExit("CLINC150 not found; pass --data DIR (the folder holding clinc150/)")


def encoder(backend: str) -> Any:
    from modeltriage import SentenceTransformerEncoder
    from modeltriage.core.onnx_encoder import OnnxEncoder

    if backend == "torch":
        return SentenceTransformerEncoder()
    return OnnxEncoder(backend, export=True)  # type: ignore[arg-type]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=None)
    parser.add_argument("--backends", default="torch,onnx,onnx-int8")
    parser.add_argument("--json", default=None)
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from modeltriage.learn.datasets import read_intents_jsonl
    from modeltriage.learn.eval_intents import load_config_dir
    from modeltriage.learn.evaluation import EvalOptions, evaluate_intents

    clinc = data_dir(args.data) / "clinc150"
    train = read_intents_jsonl(clinc / "train.intents.jsonl")
    val = read_intents_jsonl(clinc / "val.intents.jsonl")
    config = load_config_dir(REPO / "intents")
    options = EvalOptions(tune_min_similarity=True, progress=False)
    results: dict[str, Any] = {}
    for backend in args.backends.split(","):
        started = time.perf_counter()
        report = evaluate_intents(train, val, config, encoder(backend), options)
        scores = report.router.scores
        results[backend] = {
            "in_scope_accuracy": scores.in_scope_accuracy,
            "overall_accuracy": scores.overall_accuracy,
            "oos_recall": scores.oos_recall,
            "min_similarity": report.min_similarity,
            "top1_in_scope_accuracy": report.top1.scores.in_scope_accuracy,
            "seconds": round(time.perf_counter() - started, 1),
        }
        print(backend, results[backend], flush=True)

    def pct(x: float | None) -> str:
        return "-" if x is None else f"{100 * x:.2f}"

    rows = [
        [
            name,
            pct(r["in_scope_accuracy"]),
            pct(r["overall_accuracy"]),
            pct(r["oos_recall"]),
            pct(r["top1_in_scope_accuracy"]),
            r["min_similarity"],
            r["seconds"],
        ]
        for name, r in results.items()
    ]
    headers = ["backend", "in-scope %", "overall %", "OOS recall %", "top-1 in-scope %"]
    print(render_table([*headers, "min_similarity", "s"], rows))
    payload = {"machine": machine_info(), "versions": library_versions(), "results": results}
    write_json(args.json, payload)


if __name__ == "__main__":
    main()
