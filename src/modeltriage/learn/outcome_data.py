"""Labelled outcomes (``*.outcomes.jsonl``): the rows and how they are read.

One row per prompt: each model's quality and cost on it, and, when the file has them,
each model's answer. Kept apart from everything that routes, so pure modules (plans)
can use the rows without importing the router.
"""

from __future__ import annotations

import ast
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from modeltriage.errors import ConfigError
from modeltriage.learn.jsonl import read_jsonl


@dataclass(frozen=True)
class Outcome:
    quality: float
    cost_usd: float


@dataclass(frozen=True)
class OutcomeRow:
    id: str
    text: str
    task: str | None
    outcomes: Mapping[str, Outcome]
    # Each model's answer, when the file has them: what an answer-time check compares.
    responses: Mapping[str, str] = field(default_factory=dict)
    # Models with a quality but a null cost on this row: left out of ``outcomes`` until
    # priced (:func:`modeltriage.learn.outcome_prices.priced_rows`).
    unpriced: Mapping[str, float] = field(default_factory=dict)
    line: int | None = None  # where the row is in its file, for error messages


def unwrap_response(response: str) -> str:
    """The answer itself: RouterBench stores each response as the repr of a one-element
    Python list ("['B\\n']"); anything else is returned as it is."""
    text = response.strip()
    if not (text.startswith("[") and text.endswith("]")):
        return response
    try:
        value = ast.literal_eval(text)
    except (ValueError, SyntaxError, MemoryError, RecursionError):
        return response
    if isinstance(value, list) and len(value) == 1 and isinstance(value[0], str):
        return value[0]
    return response


def _quality(model: str, raw: Any) -> float | None:
    """A model's quality on a row: None when unknown (a gap, never read as 0); a value
    outside 0..1 (or not a number) is refused."""
    if raw is None:
        return None
    if isinstance(raw, bool) or not isinstance(raw, int | float):
        raise ValueError(f"{model}: quality must be a number from 0 to 1, got {raw!r}")
    value = float(raw)
    if not 0.0 <= value <= 1.0:  # NaN fails both comparisons too
        raise ValueError(f"{model}: quality must be from 0 to 1, got {raw!r}")
    return value


def _cost(model: str, raw: Any) -> float | None:
    if raw is None:
        return None
    if isinstance(raw, bool) or not isinstance(raw, int | float):
        raise ValueError(f"{model}: cost_usd must be a number, got {raw!r}")
    value = float(raw)
    if not 0.0 <= value < float("inf"):
        raise ValueError(f"{model}: cost_usd must be a finite number >= 0, got {raw!r}")
    return value


def _row(data: dict[str, Any], number: int, source: Path) -> OutcomeRow:
    outcomes: dict[str, Outcome] = {}
    unpriced: dict[str, float] = {}
    try:
        text = data["text"]
        raw = data["outcomes"]
        if not isinstance(text, str) or not isinstance(raw, dict):
            raise TypeError("text must be a string and outcomes an object")
        for model, o in raw.items():
            if not isinstance(o, dict):
                raise TypeError(f"{model}: expected an object with quality and cost_usd")
            quality = _quality(model, o["quality"])
            cost = _cost(model, o.get("cost_usd"))
            if quality is None:
                continue
            if cost is None:
                unpriced[model] = quality
            else:
                outcomes[model] = Outcome(quality, cost)
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise ConfigError(f"not an outcomes row: {exc}", source, number) from None
    task = data.get("task")
    raw_responses = data.get("responses")
    responses = (
        {m: unwrap_response(r) for m, r in raw_responses.items() if isinstance(r, str)}
        if isinstance(raw_responses, dict)
        else {}
    )
    return OutcomeRow(
        str(data.get("id", number)),
        text,
        task if isinstance(task, str) else None,
        outcomes,
        responses,
        unpriced,
        number,
    )


def read_outcomes_jsonl(path: Path | str) -> list[OutcomeRow]:
    """Read outcomes, naming the file and line of a malformed row or of a quality outside
    0..1. A null quality is a gap: that model is left out of the row. A model whose cost
    is null is kept apart in ``unpriced`` (it cannot be priced without a price list)."""
    source = Path(path)
    rows = [_row(data, number, source) for number, data in read_jsonl(source, "an outcomes row")]
    if not rows:
        raise ConfigError("no rows", source)
    return rows
