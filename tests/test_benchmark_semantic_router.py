"""benchmarks/semantic_router.py skips semantic-router, saying why, when its interpreter or
the package is missing (issue 10 asks for this), and still prints its table."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

SCRIPT = Path(__file__).resolve().parent.parent / "benchmarks" / "semantic_router.py"


def _script() -> ModuleType:
    # Loaded by path under another name: "semantic_router" is the other project's package.
    spec = importlib.util.spec_from_file_location("benchmark_semantic_router", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_a_missing_interpreter_is_skipped_with_its_path(tmp_path: Path) -> None:
    bench = _script()
    missing = str(tmp_path / "no-venv" / "bin" / "python")
    row = bench.run_semantic_router(missing, [("hi", "greet")], [("hello", "greet")], [], 1)
    assert row["skipped"] == f"no interpreter at {missing}"
    table = bench.table([row])
    assert "skipped" in table


def test_an_interpreter_without_the_package_is_skipped() -> None:
    # The project's own python has no semantic-router: the probe says so, nothing runs.
    version, why = _script().semantic_router_version(sys.executable)
    assert version is None
    assert why == f"semantic-router is not installed for {sys.executable}"


def test_latency_and_accuracy_are_computed_alike_for_both_sides() -> None:
    bench = _script()
    figures = bench.latency([float(ms) for ms in range(1, 101)])
    assert figures == {"p50_ms": 50.5, "p99_ms": 99.0}
    queries = [("a", "x"), ("b", "y"), ("c", "z"), ("d", "x")]
    assert bench.accuracy(["x", "y", None, "z"], queries) == 0.5
