"""What the service refuses in a JSON body before validating it: the literals ``NaN``,
``Infinity`` and ``-Infinity`` (Python's json module accepts them, JSON does not, and
no field means them) and lone surrogates in any string or key (they cannot be logged,
nor sent back as UTF-8). Each is reported where it is in the body.

Most bodies hold neither, and a substring search says so without parsing: only a body
that may hold one is parsed a second time.
"""

from __future__ import annotations

import json
from typing import Any

from modeltriage.http.error_responses import Problem, problem

# Every lone surrogate in valid UTF-8 JSON is an escape \uD800-\uDFFF.
_MARKERS = (b"NaN", b"Infinity", b"\\ud", b"\\uD")


class _NonFinite:
    """What the parser returns for NaN or Infinity, so the walk can say where it was."""

    def __init__(self, literal: str) -> None:
        self.literal = literal


def _lone_surrogate(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


def body_problem(body: bytes) -> Problem | None:
    """The first NaN, Infinity or lone surrogate in the JSON ``body``, as a 422 problem;
    None when there is none, or the body is not JSON (validation then says so)."""
    if not any(marker in body for marker in _MARKERS):
        return None
    try:
        parsed = json.loads(body, parse_constant=_NonFinite)
    except (ValueError, RecursionError):
        return None
    return _first_problem(parsed)


def _first_problem(parsed: Any) -> Problem | None:
    # Iterative: the parser accepts nesting deeper than Python's recursion limit.
    stack: list[tuple[tuple[int | str, ...], Any]] = [(("body",), parsed)]
    while stack:
        loc, value = stack.pop()
        if isinstance(value, _NonFinite):
            return problem(
                loc,
                f"{value.literal} is not a number JSON allows: give a finite number",
                "finite_number",
            )
        if isinstance(value, str) and _lone_surrogate(value):
            return problem(
                loc, "not valid Unicode (it contains a lone surrogate)", "string_unicode"
            )
        if isinstance(value, dict):
            for key, item in reversed(value.items()):
                if _lone_surrogate(key):
                    return problem(
                        (*loc, key),
                        "the key is not valid Unicode (a lone surrogate)",
                        "string_unicode",
                    )
                stack.append(((*loc, key), item))
        elif isinstance(value, list):
            stack.extend(((*loc, i), item) for i, item in reversed(list(enumerate(value))))
    return None
