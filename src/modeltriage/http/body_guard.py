"""The request body, read before any endpoint sees it: a pure ASGI middleware.

For POST, PUT and PATCH it refuses a body that is not ``application/json`` (415), counts
the bytes as they arrive, chunked or not, and stops at ``limits.max_body_bytes`` (413)
without holding more than the cap in memory; a client that takes longer than
``limits.body_timeout_s`` to send its body gets a 408. The whole body is then checked
(UTF-8, no NaN, Infinity or lone surrogate: see :mod:`.body_checks`) and handed on.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from starlette.datastructures import Headers
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from modeltriage.core.config import Limits
from modeltriage.http.body_checks import body_problem

_WITH_BODY = frozenset({"POST", "PUT", "PATCH"})


def _limits(scope: Scope) -> Limits | None:
    router = getattr(scope["app"].state, "router", None)
    return None if router is None else router.config.limits


def _is_json(content_type: str) -> bool:
    media = content_type.split(";", 1)[0].strip().lower()
    return media == "application/json" or (
        media.startswith("application/") and media.endswith("+json")
    )


async def _answer(scope: Scope, receive: Receive, send: Send, status: int, detail: Any) -> None:
    # The rest of an unread body is not drained: the connection is closed instead.
    headers = {"connection": "close"} if status in (408, 413) else None
    await JSONResponse({"detail": detail}, status_code=status, headers=headers)(
        scope, receive, send
    )


class BodyGuard:
    """Wraps the app; see the module docstring."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] not in _WITH_BODY:
            await self.app(scope, receive, send)
            return
        limits = _limits(scope)
        if limits is None:  # not started: let the app answer
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        refused = _refuse_headers(headers, limits.max_body_bytes)
        if refused is not None:
            await _answer(scope, receive, send, *refused)
            return
        body, problem = await _read(receive, limits)
        if problem is not None:
            if problem[0] != 0:
                await _answer(scope, receive, send, *problem)
            return
        checked = _check(body)
        if checked is not None:
            await _answer(scope, receive, send, *checked)
            return
        await self.app(scope, _replay(body, receive), send)


def _refuse_headers(headers: Headers, cap: int) -> tuple[int, Any] | None:
    content_type = headers.get("content-type")
    length = headers.get("content-length")
    has_body = "transfer-encoding" in headers or (length is not None and length.strip() != "0")
    if (content_type is not None or has_body) and not _is_json(content_type or ""):
        return 415, "send the request body as JSON, with `Content-Type: application/json`"
    if length is not None and length.isdigit() and int(length) > cap:
        return 413, f"request body of {int(length)} bytes is over the limit of {cap}"
    return None


async def _read(receive: Receive, limits: Limits) -> tuple[bytes, tuple[int, Any] | None]:
    """The body, or a status and detail (status 0: the client left)."""
    cap = limits.max_body_bytes
    deadline = time.monotonic() + limits.body_timeout_s
    chunks: list[bytes] = []
    size = 0
    while True:
        try:
            message = await asyncio.wait_for(receive(), deadline - time.monotonic())
        except asyncio.TimeoutError:
            return b"", (408, f"the request body took over {limits.body_timeout_s:g}s to arrive")
        if message["type"] == "http.disconnect":
            return b"", (0, None)
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > cap:
            return b"", (413, f"request body is over the limit of {cap} bytes")
        chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks), None


def _check(body: bytes) -> tuple[int, Any] | None:
    try:
        body.decode("utf-8")
    except UnicodeDecodeError as exc:
        return 400, f"request body is not valid UTF-8 (byte {exc.start})"
    found = body_problem(body)
    return None if found is None else (422, [found])


def _replay(body: bytes, receive: Receive) -> Receive:
    sent = False

    async def replay() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()  # after the body: wait for the disconnect

    return replay
