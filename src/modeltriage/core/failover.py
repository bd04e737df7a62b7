"""Failover along a decision's chain: which model to try after failures. Pure."""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class Failover:
    """The next model to try after failures, or None when the chain is exhausted."""

    model: str | None
    reason: str


def next_model(
    chain: Sequence[str], failed: Collection[str], unhealthy: Collection[str]
) -> Failover:
    """The model to try after ``failed`` in ``chain`` (a decision's model, then its
    fallbacks). A chain is tried in order, so models before the last failed one were
    already tried: the answer is the first model after it that has neither failed nor is
    marked unhealthy."""
    failed_positions = [i for i, name in enumerate(chain) if name in failed]
    start = failed_positions[-1] + 1 if failed_positions else 0
    skipped: list[str] = []
    for name in chain[start:]:
        if name in failed:
            continue
        if name in unhealthy:
            skipped.append(name)
            continue
        after = f"after {chain[start - 1]} failed" if start else "none of the chain failed"
        also = f"; skipped unhealthy {', '.join(skipped)}" if skipped else ""
        return Failover(name, f"next in the chain {after}{also}")
    also = f" (unhealthy: {', '.join(skipped)})" if skipped else ""
    return Failover(None, f"no model left in the chain{also}")
