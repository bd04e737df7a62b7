"""How the service answers an error: a status and a JSON ``detail`` that can always be
encoded and stays short, whatever the request held (NaN, lone surrogates, megabytes).

A validation error says, per problem, only where (``loc``), what (``msg``) and its kind
(``type``): never the input nor pydantic's ``ctx``, which may hold values JSON cannot
carry, or the caller's whole body.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse

from modeltriage.errors import (
    InputError,
    InvalidEntryError,
    LogStoreError,
    ModelTriageError,
    OverloadedError,
    UnknownDecisionError,
)

_log = logging.getLogger(__name__)
MAX_MESSAGE_CHARS = 500
MAX_LOC_PART_CHARS = 100
# A body with 100,000 wrong list items gets the first few, not a 100,000-item answer.
MAX_PROBLEMS = 20
Problem = dict[str, Any]


def safe_text(text: str, limit: int = MAX_MESSAGE_CHARS) -> str:
    """``text`` as valid UTF-8 (a lone surrogate written as its escape), at most
    ``limit`` characters."""
    text = text.encode("utf-8", "backslashreplace").decode("utf-8")
    return text if len(text) <= limit else text[: limit - 1] + "…"


def problem(loc: Iterable[object], msg: str, kind: str) -> Problem:
    """One entry of a 422's ``detail``."""
    where: list[int | str] = [
        part
        if isinstance(part, int) and not isinstance(part, bool)
        else safe_text(str(part), MAX_LOC_PART_CHARS)
        for part in loc
    ]
    return {"loc": where, "msg": safe_text(msg), "type": safe_text(kind, MAX_LOC_PART_CHARS)}


def validation_problems(errors: Iterable[Mapping[str, Any]]) -> list[Problem]:
    """Pydantic's errors as ``loc``, ``msg`` and ``type`` only."""
    problems: list[Problem] = []
    for error in errors:
        if len(problems) == MAX_PROBLEMS:
            break
        msg = str(error.get("msg", ""))
        problems.append(problem(error.get("loc", ()), msg, str(error.get("type", ""))))
    return problems


def error_status(exc: ModelTriageError) -> int:
    """The status of a library error."""
    if isinstance(exc, InputError):
        return 413 if exc.too_large else 422
    if isinstance(exc, UnknownDecisionError):
        return 404
    if isinstance(exc, InvalidEntryError):
        return 422
    if isinstance(exc, LogStoreError | OverloadedError):
        return 503
    return 500


def install_error_handlers(app: FastAPI) -> None:
    """Answer validation and library errors with a 4xx (or a 503 for the log) and a
    ``detail`` that is safe to encode."""

    async def invalid_request(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, RequestValidationError)
        return JSONResponse({"detail": validation_problems(exc.errors())}, status_code=422)

    async def library_error(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, ModelTriageError)
        if isinstance(exc, LogStoreError) and exc.url is not None:
            # The store's message names a path or a host: for the operator's log only.
            _log.warning("decision log error: %s", exc)
            return JSONResponse(
                {"detail": "the decision log is unavailable; try again later"},
                status_code=503,
                headers={"Retry-After": "1"},
            )
        # Library messages are bounded already; the cap only guards against one quoting
        # a caller's value at length.
        detail = safe_text(str(exc), 4 * MAX_MESSAGE_CHARS)
        # An overloaded queue says when to come back, so clients back off instead of
        # retrying at once.
        headers = (
            {"Retry-After": str(exc.retry_after_s)} if isinstance(exc, OverloadedError) else None
        )
        return JSONResponse({"detail": detail}, status_code=error_status(exc), headers=headers)

    app.add_exception_handler(RequestValidationError, invalid_request)
    app.add_exception_handler(ModelTriageError, library_error)
