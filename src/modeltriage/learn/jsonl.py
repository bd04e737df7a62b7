"""Reading JSON-lines files, one object a line, with file:line errors."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from modeltriage.errors import ConfigError


def read_jsonl(
    path: Path | str, expected: str = "an object", what: str = "file"
) -> Iterator[tuple[int, dict[str, Any]]]:
    """Yield ``(line number, object)`` for every non-blank line of ``path``.

    An unreadable file, invalid JSON or a line that is not an object raises
    ``ConfigError`` naming the file and line; ``expected`` says what a line should be,
    ``what`` what the file is ("cannot read traffic file").
    """
    source = Path(path)
    try:
        handle = source.open(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot read {what}: {exc.strerror}", source) from None
    with handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                data = json.loads(line)
            except json.JSONDecodeError as exc:
                raise ConfigError(f"invalid JSON: {exc.msg}", source, number) from None
            except UnicodeDecodeError:
                raise ConfigError("not UTF-8 text", source, number) from None
            if not isinstance(data, dict):
                raise ConfigError(f"expected {expected}", source, number)
            yield number, data
