"""Helpers shared by the benchmark scripts (not part of the modeltriage package)."""

from __future__ import annotations

import json
import os
import platform
import sys
import time
from collections.abc import Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
# /work/main/../shared/data: the shared, read-only data folder beside the work tree.
DEFAULT_DATA = REPO.parent / "shared" / "data"

CLINC_CITATION = (
    "CLINC150 (Larson et al., 2019, 'An Evaluation Dataset for Intent Classification and "
    "Out-of-Scope Prediction'), github.com/clinc/oos-eval, licence CC BY 3.0"
)


def _machine_jiffies() -> tuple[int, int]:
    """(busy, total) jiffies of all CPUs from /proc/stat; (0, 0) where unavailable."""
    try:
        with open("/proc/stat", encoding="ascii") as fh:
            f = [int(x) for x in fh.readline().split()[1:]]
    except (OSError, ValueError):
        return 0, 0
    idle = f[3] + (f[4] if len(f) > 4 else 0)
    busy = sum(f[:8]) - idle  # user nice system idle iowait irq softirq steal
    return busy, busy + idle


def _process_jiffies(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as fh:
            rest = fh.read().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return 0
    return int(rest[11]) + int(rest[12])  # utime + stime, all threads


class CpuMeter:
    """How busy the machine was during a measurement, and how much of it was not us.

    The machine is shared: ``others_pct`` (CPU used by processes other than ``pids``, as a
    percentage of all cores) says how disturbed a figure is.
    """

    def __init__(self, pids: Sequence[int] = ()) -> None:
        self.pids = [os.getpid(), *pids]
        self.start = _machine_jiffies(), [_process_jiffies(p) for p in self.pids]

    def stop(self) -> dict[str, float | None]:
        (busy0, total0), own0 = self.start
        busy1, total1 = _machine_jiffies()
        own1 = [_process_jiffies(p) for p in self.pids]
        total = total1 - total0
        if total <= 0:
            return {"machine_busy_pct": None, "others_cpu_pct": None}
        own = sum(b - a for a, b in zip(own0, own1, strict=True))
        return {
            "machine_busy_pct": 100.0 * (busy1 - busy0) / total,
            "others_cpu_pct": max(0.0, 100.0 * (busy1 - busy0 - own) / total),
        }


def machine_info() -> dict[str, Any]:
    info: dict[str, Any] = {
        "date_utc": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        "note": "2 cores, shared with other workloads (noisy): compare rows of one run, "
        "not figures across runs",
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
    }
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as fh:
            for line in fh:
                if line.startswith("model name"):
                    info["cpu"] = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    try:
        with open("/proc/loadavg", encoding="ascii") as fh:
            info["loadavg_at_start"] = fh.read().split()[:3]
    except OSError:
        pass
    return info


def library_versions() -> dict[str, str]:
    out: dict[str, str] = {}
    for name in (
        "modeltriage",
        "numpy",
        "faiss",
        "torch",
        "sentence_transformers",
        "fastapi",
        "uvicorn",
        "httpx",
    ):
        module = sys.modules.get(name)
        if module is None:
            try:
                module = __import__(name)
            except ImportError:
                continue
        out[name] = str(getattr(module, "__version__", "?"))
    return out


def render_table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """Plain-text table that is also valid GitHub markdown."""
    cells = [[_fmt(c) for c in row] for row in rows]
    widths = [
        max(len(h), *(len(r[i]) for r in cells)) if cells else len(h) for i, h in enumerate(headers)
    ]

    def line(values: Sequence[str]) -> str:
        return (
            "| "
            + " | ".join(
                v.rjust(w) if _numeric(v) else v.ljust(w)
                for v, w in zip(values, widths, strict=True)
            )
            + " |"
        )

    out = [line(list(headers)), "|" + "|".join("-" * (w + 2) for w in widths) + "|"]
    out.extend(line(r) for r in cells)
    return "\n".join(out)


def _numeric(value: str) -> bool:
    return (
        value.replace(".", "", 1)
        .replace("-", "", 1)
        .replace("%", "")
        .replace("+", "", 1)
        .strip()
        .isdigit()
    )


def _fmt(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        if abs(value) >= 100:
            return f"{value:.0f}"
        if abs(value) >= 10:
            return f"{value:.1f}"
        return f"{value:.2f}" if abs(value) >= 0.1 or value == 0 else f"{value:.3f}"
    return str(value)


def write_json(path: str | None, payload: dict[str, Any]) -> None:
    if not path:
        return
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(json.dumps(payload, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    print(f"\nwrote {target}")


class Stopwatch:
    def __init__(self) -> None:
        self.start = time.perf_counter()

    def __call__(self) -> float:
        return time.perf_counter() - self.start
