"""Seeded train/test splits: the same seed gives the same split on every machine."""

from __future__ import annotations

import random
from collections.abc import Sequence
from typing import Protocol, TypeVar

T = TypeVar("T")


class Labelled(Protocol):
    """A row with an intent label; ``None`` is out of scope."""

    @property
    def intent(self) -> str | None: ...


L = TypeVar("L", bound=Labelled)


def seeded_split(items: Sequence[T], held_out: float, seed: int) -> tuple[list[T], list[T]]:
    """Shuffle with ``seed`` and hold out ``held_out`` (a share, 0..1) of ``items``.

    Returns ``(kept, held)``; the held part is the last ``round(n * held_out)`` of the
    shuffled order.
    """
    if not 0 <= held_out < 1:
        raise ValueError(f"held_out must be a share from 0 to below 1, got {held_out!r}")
    order = list(range(len(items)))
    random.Random(seed).shuffle(order)
    cut = len(order) - round(len(order) * held_out)
    return [items[i] for i in order[:cut]], [items[i] for i in order[cut:]]


def split_by_intent(rows: Sequence[L], share: float, seed: int) -> tuple[list[L], list[L]]:
    """(kept, held out): ``share`` of each intent's rows, drawn with ``seed``, is held out,
    and so is every out-of-scope row (they never become exemplars anyway). Each intent
    keeps at least one row.

    Unlike :func:`seeded_split`, stratified: every intent keeps its own share, so a small
    intent is never left without exemplars. ``eval intents --tune-min-similarity``,
    ``finetune --hold-out`` and the CLINC benchmarks hold out the same rows for a seed.
    """
    by_intent: dict[str, list[L]] = {}
    held: list[L] = []
    for row in rows:
        if row.intent is None:
            held.append(row)
        else:
            by_intent.setdefault(row.intent, []).append(row)
    rng = random.Random(seed)
    kept: list[L] = []
    for name in sorted(by_intent):
        group = list(by_intent[name])
        rng.shuffle(group)
        cut = min(round(len(group) * share), len(group) - 1)
        held.extend(group[:cut])
        kept.extend(group[cut:])
    return kept, held
