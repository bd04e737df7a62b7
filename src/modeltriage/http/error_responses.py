"""How the service answers an error: a status and a JSON ``detail`` that can always be
encoded and stays short, whatever the request held (NaN, lone surrogates, megabytes).

A validation error says, per problem, only where (``loc``), what (``msg``) and its kind
(``type``): never the input nor pydantic's ``ctx``, which may hold values JSON cannot
carry, or the caller's whole body.

The OpenAPI schema documents these answers as they are (:func:`document_errors`): one
:class:`ErrorBody` for every error status, and the statuses the body guard gives any POST.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.utils import get_openapi
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field

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
# What each error status means, as the schema says it.
STATUS_MEANING = {
    400: "the request body is not valid UTF-8",
    401: "no API key, or an unknown one (`Authorization: Bearer KEY`)",
    403: "the key's role may not call this endpoint, or admin endpoints are off",
    404: "no such decision (or model) is known",
    408: "the request body took longer than limits.body_timeout_s to arrive",
    409: "the change was refused",
    413: "the request body, a text or a batch is over its limit (limits in router.yaml)",
    415: "the request body is not `Content-Type: application/json`",
    422: "the request is not valid: `detail` lists the problems, or says what is wrong",
    503: "the decision log is unavailable, or the service is overloaded (see Retry-After)",
}
# What the body guard may answer to any request with a body, before the endpoint runs.
BODY_STATUSES = (400, 408, 413, 415, 422)


class ProblemOut(BaseModel):
    """One problem of a request that did not validate."""

    loc: list[int | str] = Field(description="where: body, then the field's path")
    msg: str
    type: str


class ErrorBody(BaseModel):
    """Every error answer: a sentence, or (a validation error) the list of problems."""

    detail: str | list[ProblemOut]


def error_docs(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """``responses=`` for FastAPI: ``statuses`` answered with an :class:`ErrorBody`."""
    return {s: {"model": ErrorBody, "description": STATUS_MEANING[s]} for s in statuses}


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
        detail: str | list[Problem] = safe_text(str(exc), 4 * MAX_MESSAGE_CHARS)
        if isinstance(exc, InputError) and exc.field:
            # A refusal of one field is told like a validation error: where, what, why.
            detail = [problem(("body", *exc.field), str(exc), "limit")]
        # An overloaded queue says when to come back, so clients back off instead of
        # retrying at once.
        headers = (
            {"Retry-After": str(exc.retry_after_s)} if isinstance(exc, OverloadedError) else None
        )
        return JSONResponse({"detail": detail}, status_code=error_status(exc), headers=headers)

    app.add_exception_handler(RequestValidationError, invalid_request)
    app.add_exception_handler(ModelTriageError, library_error)
    document_errors(app)


def document_errors(app: FastAPI) -> None:
    """Make the app's OpenAPI schema say what its errors really look like: every POST may
    get the body guard's statuses, and every error status (FastAPI's default 422
    included) has an :class:`ErrorBody`, unless an endpoint documents a body of its own."""

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is not None:
            return app.openapi_schema
        schema = get_openapi(
            title=app.title,
            version=app.version,
            summary=app.summary,
            routes=app.routes,
        )
        components = schema.setdefault("components", {}).setdefault("schemas", {})
        body = ErrorBody.model_json_schema(ref_template="#/components/schemas/{model}")
        components.update(body.pop("$defs", {}))
        components["ErrorBody"] = body
        error_content = {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorBody"}}}
        for methods in schema.get("paths", {}).values():
            for method, operation in methods.items():
                responses = operation.setdefault("responses", {})
                statuses = [int(s) for s in responses if s.isdigit() and int(s) >= 400]
                if method == "post":
                    statuses += BODY_STATUSES
                for status in sorted(set(statuses)):
                    entry = responses.setdefault(
                        str(status), {"description": STATUS_MEANING.get(status, "error")}
                    )
                    content = entry.get("content", {}).get("application/json", {})
                    if not content or content.get("schema", {}).get("$ref", "").endswith(
                        "/HTTPValidationError"
                    ):
                        entry["content"] = error_content
        for unused in ("HTTPValidationError", "ValidationError"):
            components.pop(unused, None)
        app.openapi_schema = schema
        return schema

    app.openapi = openapi  # type: ignore[method-assign]
