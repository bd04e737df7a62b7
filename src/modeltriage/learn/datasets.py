"""Read labelled data (``*.intents.jsonl``) and turn it into intents a router can use.

Format, one JSON object a line: ``{"text": str, "intent": str | null}``; null marks an
out-of-scope request, which never becomes an exemplar.
"""

from __future__ import annotations

import random
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from modeltriage.core.config import DIFFICULTIES, Difficulty, RouterConfig
from modeltriage.core.intents import Exemplar, Intent, IntentSet
from modeltriage.errors import ConfigError
from modeltriage.learn.jsonl import read_jsonl


@dataclass(frozen=True)
class LabelledText:
    text: str
    intent: str | None
    difficulty: Difficulty | None = None


def read_intents_jsonl(path: Path | str) -> list[LabelledText]:
    """Read a labelled file, naming the file and line of any malformed row."""
    source = Path(path)
    rows: list[LabelledText] = []
    for number, data in read_jsonl(source, "an object with text and intent"):
        # "expected_intent" is the traffic-sample spelling of the same label.
        key = "intent" if "intent" in data else "expected_intent"
        if key not in data:
            raise ConfigError('expected an "intent" (null for out of scope)', source, number)
        text, intent = data.get("text"), data.get(key)
        if not isinstance(text, str) or not text.strip():
            raise ConfigError("text must be a non-empty string", source, number)
        if intent is not None and not isinstance(intent, str):
            raise ConfigError("intent must be a string or null", source, number)
        difficulty = data.get("difficulty", data.get("expected_difficulty"))
        if difficulty is not None and difficulty not in DIFFICULTIES:
            raise ConfigError(
                f"difficulty must be one of {', '.join(DIFFICULTIES)} or null", source, number
            )
        rows.append(LabelledText(text, intent, difficulty))
    return rows


_NOT_IN_A_NAME = re.compile(r"[^A-Za-z0-9_.\-]+")
# The intent schema's pattern (core.intents.Intent.name).
_INTENT_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.\-]*")


def intent_name_for(label: str) -> str:
    """A valid intent name for a dataset's label: runs of other characters become one
    ``_`` and leading punctuation goes (BANKING77's ``reverted_card_payment?`` becomes
    ``reverted_card_payment``); a label with no letter or digit becomes ``intent``."""
    name = _NOT_IN_A_NAME.sub("_", label.strip()).lstrip("_.-").rstrip("_")
    return name or "intent"


def rename_labels(
    *row_sets: Sequence[LabelledText],
) -> tuple[list[list[LabelledText]], dict[str, str]]:
    """The rows with every label made a valid intent name (the same label the same name in
    every set), and {new name: original label} for the labels that changed. A label that
    is already valid keeps its name; a renamed one that would collide gets ``-2``, ``-3``."""
    labels = sorted({r.intent for rows in row_sets for r in rows if r.intent is not None})
    valid = [label for label in labels if _INTENT_NAME.fullmatch(label)]
    taken = set(valid)
    mapping = {label: label for label in valid}
    for label in labels:
        if label in mapping:
            continue
        base = name = intent_name_for(label)
        suffix = 2
        while name in taken:
            name, suffix = f"{base}-{suffix}", suffix + 1
        taken.add(name)
        mapping[label] = name
    renamed = [
        [
            r if r.intent is None else LabelledText(r.text, mapping[r.intent], r.difficulty)
            for r in rows
        ]
        for rows in row_sets
    ]
    return renamed, {new: old for old, new in mapping.items() if new != old}


def intents_from_labelled(
    rows: Iterable[LabelledText],
    *,
    per_intent: int | None = None,
    seed: int = 0,
    difficulty: Difficulty = "easy",
) -> tuple[Intent, ...]:
    """Group in-scope rows by intent; optionally keep ``per_intent`` sampled with ``seed``."""
    grouped: dict[str, list[str]] = {}
    for row in rows:
        if row.intent is None:
            continue
        texts = grouped.setdefault(row.intent, [])
        if row.text.strip().casefold() not in {t.casefold() for t in texts}:
            texts.append(row.text.strip())
    rng = random.Random(seed)
    intents = []
    for name in sorted(grouped):
        texts = grouped[name]
        if per_intent is not None and per_intent < len(texts):
            texts = rng.sample(texts, per_intent)
        intents.append(
            Intent(
                name=name,
                difficulty=difficulty,
                exemplars=[Exemplar(text=t) for t in texts],
            )
        )
    return tuple(intents)


def intent_set_from_labelled(
    rows: Sequence[LabelledText],
    config: RouterConfig,
    *,
    per_intent: int | None = None,
    seed: int = 0,
) -> IntentSet:
    return IntentSet(
        config=config, intents=intents_from_labelled(rows, per_intent=per_intent, seed=seed)
    )
