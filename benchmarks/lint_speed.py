"""How long `modeltriage lint` takes on 15,000 exemplars once the index is built.

CLINC150's train split (150 intents x 100 exemplars; the out-of-scope rows are left out)
is written as an intents directory under the cache dir ($MODELTRIAGE_CACHE_DIR, else
~/.cache/modeltriage), built once with the real encoder (skipped when its index is
current), then linted ``--repeat`` times. The figures are the wall and CPU time of
``learn.lint.lint_intents`` from loading the intent files to the finished report: no
encoder is loaded, the vectors come out of the saved FAISS index.

    PYTHONPATH=src .venv/bin/python benchmarks/lint_speed.py --data /work/shared/data

Data: CLINC150 (see _common.CLINC_CITATION); never copied into the repository.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
import time
from collections import defaultdict
from pathlib import Path

from _common import CLINC_CITATION, DEFAULT_DATA, REPO, CpuMeter, machine_info

from modeltriage.core.index import exemplar_rows, index_is_current
from modeltriage.core.intents import load_intents
from modeltriage.core.onnx_files import cache_root
from modeltriage.learn.lint import lint_intents
from modeltriage.loading import build_index


def write_clinc_intents(train: Path, out: Path) -> int:
    """One intent file per CLINC intent; returns the number of exemplars written."""
    by_intent: dict[str, list[str]] = defaultdict(list)
    with train.open(encoding="utf-8") as fh:
        for line in fh:
            row = json.loads(line)
            if row["intent"] is not None:
                by_intent[row["intent"]].append(row["text"])
    out.mkdir(parents=True, exist_ok=True)
    shutil.copy(REPO / "intents" / "router.yaml", out / "router.yaml")
    for name, texts in by_intent.items():
        unique = list(dict.fromkeys(t.strip() for t in texts if t.strip()))
        body = {"name": name, "difficulty": "moderate", "exemplars": unique}
        (out / f"{name}.yaml").write_text(json.dumps(body, ensure_ascii=False), encoding="utf-8")
    return sum(len(set(v)) for v in by_intent.values())


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--prepare-only", action="store_true", help="build the index and stop")
    args = parser.parse_args()
    directory = cache_root() / "bench" / "clinc_lint_intents"
    write_clinc_intents(args.data / "clinc150" / "train.intents.jsonl", directory)
    intent_set = load_intents(directory)
    rows = exemplar_rows(intent_set.intents)
    built = index_is_current(intent_set.index_path, rows, _encoder_id(directory))
    if not built:
        started = time.perf_counter()
        build_index(directory)
        print(f"built the index in {time.perf_counter() - started:.0f}s", file=sys.stderr)
    if args.prepare_only:
        return 0
    times, cpu = [], []
    meter = CpuMeter()
    for _ in range(args.repeat):
        started, started_cpu = time.perf_counter(), time.process_time()
        report = lint_intents(directory)
        times.append(time.perf_counter() - started)
        cpu.append(time.process_time() - started_cpu)
    result = {
        "exemplars": report.exemplars,
        "intents": report.intents,
        "loo_accuracy": report.loo_accuracy,
        "findings": len(report.findings),
        "seconds": [round(t, 3) for t in times],
        "median_s": round(statistics.median(times), 3),
        # CPU seconds of this process (all threads): what an idle machine would need at
        # most, since the wall time on a shared machine includes waiting for a core.
        "cpu_seconds": [round(t, 3) for t in cpu],
        **meter.stop(),
        "machine": machine_info(),
        "data": CLINC_CITATION,
    }
    print(json.dumps(result, indent=1))
    return 0


def _encoder_id(directory: Path) -> str:
    from modeltriage.core.index import read_manifest
    from modeltriage.errors import IndexStateError

    try:
        return read_manifest(load_intents(directory).index_path)[1].encoder
    except IndexStateError:
        return ""


if __name__ == "__main__":
    sys.exit(main())
