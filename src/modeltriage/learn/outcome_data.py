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


def _row(data: dict[str, Any], number: int, source: Path) -> OutcomeRow:
    try:
        text = data["text"]
        raw = data["outcomes"]
        if not isinstance(text, str) or not isinstance(raw, dict):
            raise TypeError("text must be a string and outcomes an object")
        outcomes = {
            model: Outcome(float(o["quality"]), float(o["cost_usd"]))
            for model, o in raw.items()
            if o.get("cost_usd") is not None
        }
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
    )


def read_outcomes_jsonl(path: Path | str) -> list[OutcomeRow]:
    """Read outcomes, naming the file and line of a malformed row. A model whose cost is
    null is left out of that row (it cannot be priced)."""
    source = Path(path)
    rows = [_row(data, number, source) for number, data in read_jsonl(source, "an outcomes row")]
    if not rows:
        raise ConfigError("no rows", source)
    return rows
