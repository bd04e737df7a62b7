"""Writing tuned thresholds back into router.yaml: in place, comments and layout kept,
the old file kept beside it, and never a config the router would refuse."""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from modeltriage.core.intents import load_router_config
from modeltriage.core.yamlsource import YamlDocument
from modeltriage.errors import ConfigError

_VALUE = re.compile(
    r"^(?P<head>\s*(?P<key>[A-Za-z_]+)\s*:\s*)(?P<value>[^#\n]*?)(?P<tail>\s*(#.*)?)$"
)


class _Unchanged:
    """The value of a threshold the caller leaves as the file has it."""


UNCHANGED = _Unchanged()


def format_value(value: float | None) -> str:
    """A threshold as router.yaml spells it."""
    return "null" if value is None else f"{value:g}"


def thresholds_yaml(values: Mapping[str, float | None]) -> str:
    """A ``thresholds:`` block setting ``values``, to paste into router.yaml."""
    return "thresholds:\n" + "".join(f"  {k}: {format_value(v)}\n" for k, v in values.items())


def write_thresholds(
    config_path: Path,
    margin: float | None,
    min_similarity: float | None,
    difficulty_confidence: float | None = None,
    *,
    cascade_margin: float | _Unchanged | None = UNCHANGED,
) -> Path:
    """Set ``thresholds.margin`` and ``thresholds.min_similarity`` in router.yaml in place
    (and ``cascade_margin`` when given), keeping comments and layout; the old file is kept
    beside it. Returns the backup path."""
    doc = YamlDocument.read(config_path)
    original = config_path.read_text(encoding="utf-8")
    values = {"margin": margin, "min_similarity": min_similarity}
    if not isinstance(cascade_margin, _Unchanged):
        values["cascade_margin"] = cascade_margin
    thresholds = doc.data.get("thresholds") if isinstance(doc.data, dict) else None
    # Only mention difficulty_confidence where it matters: set, or already in the file.
    if difficulty_confidence is not None or (
        isinstance(thresholds, dict) and "difficulty_confidence" in thresholds
    ):
        values["difficulty_confidence"] = difficulty_confidence
    if not isinstance(thresholds, dict):
        updated = original.rstrip("\n") + "\n\n" + thresholds_yaml(values)
    else:
        updated = _edited(config_path, doc, original, thresholds, values)
    return _replace_checked(config_path, original, updated)


def _edited(
    config_path: Path,
    doc: YamlDocument,
    original: str,
    thresholds: dict[str, Any],
    values: dict[str, float | None],
) -> str:
    """``original`` with each value rewritten on its own line, or added under
    ``thresholds:`` when the file lacks it."""
    lines = original.splitlines(keepends=True)
    missing = []
    for key, value in values.items():
        text = format_value(value)
        if key not in thresholds:
            missing.append(f"  {key}: {text}\n")
            continue
        line = doc.line_of(("thresholds", key))
        match = None if line is None else _VALUE.match(lines[line - 1].rstrip("\n"))
        if line is None or match is None or match["key"] != key:
            raise ConfigError(
                f"cannot update thresholds.{key} in place; edit it by hand", config_path, line
            )
        newline = "\n" if lines[line - 1].endswith("\n") else ""
        lines[line - 1] = f"{match['head']}{text}{match['tail'] or ''}{newline}"
    if missing:
        at = doc.line_of(("thresholds",))
        assert at is not None
        lines[at:at] = missing
    return "".join(lines)


def _replace_checked(config_path: Path, original: str, updated: str) -> Path:
    """Replace the file with ``updated`` once the router accepts it; keep ``original``
    beside it and return that backup's path."""
    tmp = config_path.with_name(f".{config_path.name}.tmp")
    tmp.write_text(updated, encoding="utf-8")
    try:
        load_router_config(tmp)  # never leave a config the router would refuse
    except ConfigError:
        tmp.unlink()
        raise
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S")
    backup = config_path.with_name(f"{config_path.name}.bak-{stamp}")
    backup.write_text(original, encoding="utf-8")
    tmp.replace(config_path)
    return backup
