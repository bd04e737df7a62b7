"""How fast the explorer recomputes decisions when a slider moves: 10,000 decisions (the
shipped traffic sample repeated) from cached neighbours, through the real encoder and
index once. Run: `.venv/bin/python benchmarks/explore_sweep.py`."""

from __future__ import annotations

import statistics
import time
from pathlib import Path

from modeltriage import Router
from modeltriage.learn.explore import Settings, ThresholdExplorer
from modeltriage.learn.tuning_cases import labelled_cases

REPO = Path(__file__).resolve().parent.parent


def main() -> None:
    router = Router.load(REPO / "intents", build_if_needed=True, log=False)
    found = labelled_cases(router, REPO / "examples/traffic/support_day.jsonl", log=False)
    cases = (found.cases * (10_000 // len(found.cases) + 1))[:10_000]
    intents = {i.name: i for i in router.intent_set.intents}
    started = time.perf_counter()
    explorer = ThresholdExplorer(cases, router.config, intents, found.quality)
    explorer.point(Settings.of(router.config))
    print(f"cache 10,000 cases (every branch decided once): {time.perf_counter() - started:.1f} s")
    timings = []
    for margin in [i / 100 for i in range(0, 60)]:
        for min_similarity in (0.3, 0.45, 0.6):
            started = time.perf_counter()
            explorer.point(Settings(margin, 0.6, min_similarity))
            timings.append((time.perf_counter() - started) * 1000)
    timings.sort()
    print(
        f"recompute 10,000 decisions, {len(timings)} settings: p50 "
        f"{statistics.median(timings):.2f} ms, p99 {timings[int(0.99 * len(timings))]:.2f} ms, "
        f"max {timings[-1]:.2f} ms"
    )


if __name__ == "__main__":
    main()
