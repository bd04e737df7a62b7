#!/usr/bin/env python3
"""Encoder backends side by side: export time, then ``encode([q])`` latency of torch,
onnx (fp32) and onnx-int8, with 1 and 2 onnxruntime threads, in one run.

Run from the repository root:

    HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/encoder_backends.py [--n 300] [--json out.json]

The export goes to a fresh temporary cache (so its time is a cold export), which is
removed at the end. Queries are the first ``n`` exemplars of the shipped intents (short
support requests), one at a time, variants interleaved in rounds so machine noise hits
them alike. The machine is small and shared: compare rows within one run.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import REPO, library_versions, machine_info, render_table, write_json
from latency import interleaved, other_load

EXPORT = """
import time
from modeltriage.core.onnx_encoder import OnnxEncoder
started = time.perf_counter()
OnnxEncoder("onnx", export=True)
middle = time.perf_counter()
OnnxEncoder("onnx-int8", export=True)
print(middle - started, time.perf_counter() - middle)
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=300, help="queries per variant")
    parser.add_argument("--json", default=None, help="also write the figures here")
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    cache = tempfile.mkdtemp(prefix="mt-onnx-bench-")
    os.environ["MODELTRIAGE_CACHE_DIR"] = cache
    try:
        run(args.n, args.json)
    finally:
        shutil.rmtree(cache, ignore_errors=True)


def run(n: int, json_path: str | None) -> None:
    from modeltriage import SentenceTransformerEncoder, load_intents
    from modeltriage.core.onnx_encoder import OnnxEncoder

    # Exported in a child process, so the torch model the export loads does not share
    # this process (and its threads) with the encoders timed below.
    child = subprocess.run(
        [sys.executable, "-c", EXPORT], capture_output=True, text=True, check=True
    )
    export_fp32, quantise = (float(x) for x in child.stdout.split())
    print(f"export fp32 {export_fp32:.1f} s, quantise int8 {quantise:.1f} s (cold cache)")

    texts = [e.text for i in load_intents(REPO / "intents").intents for e in i.exemplars][:n]
    encoders: dict[str, Any] = {
        "torch": SentenceTransformerEncoder(),
        "onnx, 1 thread": OnnxEncoder("onnx", threads=1),
        "onnx, 2 threads": OnnxEncoder("onnx", threads=2),
        "onnx-int8, 1 thread": OnnxEncoder("onnx-int8", threads=1),
        "onnx-int8, 2 threads": OnnxEncoder("onnx-int8", threads=2),
    }
    variants = {name: (lambda q, e=enc: e.encode([q]), texts) for name, enc in encoders.items()}
    results = interleaved(variants, n=len(texts), rounds=10, warmup=20, budget_s=600)
    rows = [
        [name, r["n"], round(r["p50_ms"], 2), round(r["p99_ms"], 2), round(r["mean_ms"], 2)]
        for name, r in results.items()
    ]
    print(render_table(["encoder", "queries", "p50 ms", "p99 ms", "mean ms"], rows))
    print(other_load(next(iter(results.values()))))
    write_json(
        json_path,
        {
            "machine": machine_info(),
            "versions": library_versions(),
            "export_fp32_s": export_fp32,
            "quantise_int8_s": quantise,
            "encode_one": results,
        },
    )


if __name__ == "__main__":
    main()
