"""Matplotlib, loaded lazily (the ``eval`` extra) and drawing to files only."""

from __future__ import annotations

from pathlib import Path
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


def save(fig: Any, ax: Any, path: Path) -> None:
    """Finish a single-axes figure the one way every plot here looks (grid, legend at the
    lower right), write it to ``path`` (creating its folder) and free it."""
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    pyplot().close(fig)
