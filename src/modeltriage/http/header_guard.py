"""A deadline and a size cap for the request line and headers, which uvicorn lacks.

Uvicorn (0.54) arms no timer while it waits for a request's headers: a client that
connects and sends nothing, or trickles a header byte every few seconds, holds a
connection (a file descriptor) for as long as it likes, and any byte it sends cancels the
keep-alive timer. With httptools (uvicorn's default parser when installed) the headers
are not even capped in size. ``serve`` runs uvicorn with these protocol classes
(``--http modeltriage.http.header_guard:...``): each connection must complete its request
line and headers within ``$MODELTRIAGE_HEADER_TIMEOUT_S`` seconds (``serve
--timeout-headers``, default 10) of connecting or of its previous response, in at most
:data:`MAX_HEADER_BYTES` bytes, or it gets a 408 (431 for the size) and is closed. The
body has its own deadline (``limits.body_timeout_s``, :mod:`.body_guard`).
"""

from __future__ import annotations

import asyncio
import os
from importlib.util import find_spec
from typing import Any

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol

HEADER_TIMEOUT_ENV = "MODELTRIAGE_HEADER_TIMEOUT_S"
DEFAULT_HEADER_TIMEOUT_S = 10.0
# What nginx allows by default (4 buffers of 8 KiB) twice over; h11 stops at 16 KiB.
MAX_HEADER_BYTES = 65_536
# How long a refused connection is drained before it is closed.
LINGER_S = 1.0


def header_timeout_s() -> float:
    """The deadline ``serve`` set for this process (workers inherit the environment)."""
    try:
        value = float(os.environ.get(HEADER_TIMEOUT_ENV, DEFAULT_HEADER_TIMEOUT_S))
    except ValueError:
        return DEFAULT_HEADER_TIMEOUT_S
    return value if 0 < value < float("inf") else DEFAULT_HEADER_TIMEOUT_S


def _refusal(status: int, reason: str) -> bytes:
    body = f"{reason}\n".encode("ascii")
    return (
        f"HTTP/1.1 {status} {reason}\r\ncontent-type: text/plain; charset=utf-8\r\n"
        f"content-length: {len(body)}\r\nconnection: close\r\n\r\n"
    ).encode("ascii") + body


class _Deadline:
    """The timer both protocol classes share: armed while a connection owes headers."""

    def __init__(self, loop: asyncio.AbstractEventLoop, expire: Any) -> None:
        self.loop = loop
        self.expire = expire
        self.timer: asyncio.TimerHandle | None = None
        self.timeout_s = header_timeout_s()

    def arm(self) -> None:
        self.disarm()
        self.timer = self.loop.call_later(self.timeout_s, self.expire)

    def disarm(self) -> None:
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None


def _close(transport: asyncio.Transport | None, status: int, reason: str) -> None:
    if transport is not None and not transport.is_closing():
        transport.write(_refusal(status, reason))
        transport.close()


class GuardedH11Protocol(H11Protocol):
    """uvicorn's h11 protocol with the header deadline (h11 caps the size itself)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.deadline = _Deadline(self.loop, self._expired)

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self.deadline.arm()

    def connection_lost(self, exc: Exception | None) -> None:
        self.deadline.disarm()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        if self.conn.their_state is not h11.IDLE:
            self.deadline.disarm()  # the request's headers are in

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if self.conn.their_state is h11.IDLE:
            self.deadline.arm()  # the next request's headers are owed

    def _expired(self) -> None:
        if self.conn.their_state is h11.IDLE and (
            self.cycle is None or self.cycle.response_complete
        ):
            _close(self.transport, 408, "Request Timeout")


# uvicorn[standard] brings httptools, which uvicorn then prefers; plain uvicorn has h11 only.
if find_spec("httptools") is not None:
    from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

    class GuardedHttpToolsProtocol(HttpToolsProtocol):
        """uvicorn's httptools protocol with the header deadline and size cap."""

        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            self.deadline = _Deadline(self.loop, self._expired)
            self.header_bytes = 0
            self.awaiting_headers = True
            self.refused = False

        def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
            super().connection_made(transport)
            self.deadline.arm()

        def connection_lost(self, exc: Exception | None) -> None:
            self.deadline.disarm()
            super().connection_lost(exc)

        def on_message_begin(self) -> None:
            super().on_message_begin()
            self.header_bytes = 0
            if not self.awaiting_headers:  # a pipelined request: its headers are owed now
                self.awaiting_headers = True
                self.deadline.arm()

        def on_url(self, url: bytes) -> None:
            self._count(len(url))
            super().on_url(url)

        def on_header(self, name: bytes, value: bytes) -> None:
            self._count(len(name) + len(value))
            super().on_header(name, value)

        def on_headers_complete(self) -> None:
            self.awaiting_headers = False
            self.deadline.disarm()
            super().on_headers_complete()

        def on_response_complete(self) -> None:
            super().on_response_complete()
            if not self.transport.is_closing() and not self.pipeline:
                self.awaiting_headers = True
                self.deadline.arm()

        def data_received(self, data: bytes) -> None:
            if not self.refused:  # after a 431, what still arrives is dropped unread
                super().data_received(data)

        def send_400_response(self, msg: str) -> None:
            if not self.refused:  # the parser's error after our 431
                super().send_400_response(msg)

        def _count(self, size: int) -> None:
            self.header_bytes += size
            if self.header_bytes > MAX_HEADER_BYTES and not self.refused:
                self.refused = True
                self.deadline.disarm()
                self.transport.write(_refusal(431, "Request Header Fields Too Large"))
                # Closing with the client's bytes unread would reset the connection and
                # lose the 431: half-close, drop what still comes, close a moment later.
                if self.transport.can_write_eof():
                    self.transport.write_eof()
                self.loop.call_later(LINGER_S, self.transport.close)
            if self.refused:
                # Stops the parser: the rest of what was received is not looked at.
                raise ValueError("request headers over the limit")

        def _expired(self) -> None:
            if self.awaiting_headers and (self.cycle is None or self.cycle.response_complete):
                _close(self.transport, 408, "Request Timeout")

    GuardedProtocol: type[asyncio.Protocol] = GuardedHttpToolsProtocol
else:  # pragma: no cover
    GuardedProtocol = GuardedH11Protocol

PROTOCOL = f"{__name__}:GuardedProtocol"
"""What ``serve`` passes as uvicorn's ``http``: an import string, so workers load it too."""
