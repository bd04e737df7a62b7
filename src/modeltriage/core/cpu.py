"""How many cores this process may use: the one fact the build's parallel steps (bulk
embedding, the adapter's cross-validation, the static table's distillation) size by."""

from __future__ import annotations

import os


def available_cores() -> int:
    """The cores this process may run on (its affinity, where the OS reports it)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1
