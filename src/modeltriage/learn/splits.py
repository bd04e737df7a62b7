"""Seeded train/test splits: the same seed gives the same split on every machine."""

from __future__ import annotations

import random
from collections.abc import Sequence
from typing import TypeVar

T = TypeVar("T")


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
