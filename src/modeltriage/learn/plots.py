"""Matplotlib, loaded lazily (the ``eval`` extra) and drawing to files only."""

from __future__ import annotations

from typing import Any

from modeltriage.errors import MissingDependencyError


def pyplot() -> Any:
    """``matplotlib.pyplot`` on the non-interactive Agg backend; raises
    ``MissingDependencyError`` naming the ``eval`` extra when matplotlib is missing."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise MissingDependencyError("matplotlib", "eval") from None
    return plt
