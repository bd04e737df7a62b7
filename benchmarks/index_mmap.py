"""What a memory-mapped index saves each worker: anonymous (private) memory a process keeps
after loading an index and searching it, read normally against memory-mapped.

    PYTHONPATH=src .venv/bin/python benchmarks/index_mmap.py --size 200000

Every worker of `serve --workers N` loads the same build: anonymous memory is paid N times,
file-backed pages of a mapped index once (they are shared through the page cache).
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
from _common import render_table

CHILD = """
import sys, numpy as np, faiss
def anon():
    for line in open("/proc/self/status"):
        if line.startswith("RssAnon"):
            return int(line.split()[1]) / 1024
path, mapped = sys.argv[1], sys.argv[2] == "1"
before = anon()
flag = getattr(faiss, "IO_FLAG_MMAP_IFC", faiss.IO_FLAG_MMAP) if mapped else 0
index = faiss.read_index(path, flag)
query = np.random.default_rng(0).standard_normal((16, index.d)).astype("float32")
index.search(query, 10)
print(round(anon() - before, 1))
"""


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", type=int, default=200_000)
    parser.add_argument("--dim", type=int, default=384)
    parser.add_argument(
        "--kinds", nargs="+", default=["flat", "ivf"], help="also: hnsw (slow build)"
    )
    args = parser.parse_args()
    from modeltriage.core.ann import IndexSettings, build_faiss, plan_for

    rng = np.random.default_rng(0)
    vectors = rng.standard_normal((args.size, args.dim)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for kind in args.kinds:
            data = vectors
            plan = plan_for(len(data), IndexSettings(type=kind))  # type: ignore[arg-type]
            path = Path(tmp) / f"{kind}.faiss"
            import faiss

            faiss.write_index(build_faiss(plan, data), str(path))
            size = path.stat().st_size / 2**20
            kept = [
                subprocess.run(
                    [sys.executable, "-c", CHILD, str(path), mapped],
                    capture_output=True,
                    text=True,
                    check=True,
                ).stdout.strip()
                for mapped in ("0", "1")
            ]
            rows.append([plan.description, f"{len(data):,}", round(size), *kept])
    print(render_table(["index", "vectors", "file MB", "anon MB read", "anon MB mmap"], rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
