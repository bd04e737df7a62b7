"""FastAPI service: ``create_app()`` returns an app that routes and never calls an LLM.

The router lives on ``app.state`` for the app's lifetime (set up in the lifespan), so
several apps with different intents can coexist in one process. :func:`app_from_env` is
the factory uvicorn's worker processes import (``serve --workers N``): it reads its
settings from the environment the ``serve`` command sets.
"""

from __future__ import annotations

import importlib
import os
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path

from modeltriage import __version__
from modeltriage.core.encoders import Encoder
from modeltriage.errors import InputError, MissingDependencyError
from modeltriage.router import Router

try:
    from fastapi import FastAPI, Request, Response
    from fastapi.responses import JSONResponse
except ImportError:  # pragma: no cover - exercised only without the extra
    raise MissingDependencyError("fastapi", "serve") from None

from modeltriage.http.body_checks import body_problem
from modeltriage.http.error_responses import install_error_handlers
from modeltriage.http.routes import api, current

# JSON escaping can at most multiply a text's bytes by six ("\u00e9"-style escapes).
_JSON_OVERHEAD = 6

# What `serve --workers N` hands its worker processes.
INTENTS_ENV = "MODELTRIAGE_SERVE_INTENTS"
WORKERS_ENV = "MODELTRIAGE_SERVE_WORKERS"
# "module:callable" returning an Encoder: a custom (or, in tests, the fake) encoder that
# worker processes can build themselves, since an encoder object cannot cross into them.
ENCODER_FACTORY_ENV = "MODELTRIAGE_ENCODER_FACTORY"
# How long a worker waits for a decision another worker may still hold in its queue
# (its writer flushes every 0.2 s).
PEER_GRACE_S = 1.0


def _too_large(size: int, cap: int) -> JSONResponse:
    return JSONResponse(
        {"detail": f"request body of {size} bytes is over the limit of {cap}"}, status_code=413
    )


def create_app(
    intents_dir: Path | str = "intents",
    *,
    router: Router | None = None,
    build_if_needed: bool = False,
    encoder: Encoder | None = None,
    peer_workers: bool = False,
) -> FastAPI:
    """Build the service. Pass ``router`` to serve an already loaded one (tests, CLI).

    ``peer_workers``: other processes log to the same store, so a decision id not found
    yet may still be in another worker's queue (see :data:`PEER_GRACE_S`)."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if router is not None:
            app.state.router = router
            yield  # the caller owns the router and closes it
            return
        app.state.router = Router.load(
            intents_dir, encoder=encoder, build_if_needed=build_if_needed
        )
        if peer_workers and app.state.router.logger is not None:
            app.state.router.logger.peer_grace_s = PEER_GRACE_S
        try:
            yield
        finally:
            # Flush the decision log: a clean shutdown loses no logged rows.
            app.state.router.close()

    app = FastAPI(
        title="modeltriage",
        version=__version__,
        summary="Decides which LLM should answer a request. It never calls an LLM.",
        lifespan=lifespan,
    )

    @app.middleware("http")
    async def limit_body(
        request: Request, call_next: Callable[[Request], Awaitable[Response]]
    ) -> Response:
        if request.method != "POST":
            return await call_next(request)
        limits = current(request).config.limits
        cap = limits.max_text_bytes * limits.max_batch * _JSON_OVERHEAD + 4096
        # Refuse oversized bodies from their header, before reading them into memory.
        length = request.headers.get("content-length")
        if length is not None and length.isdigit() and int(length) > cap:
            return _too_large(int(length), cap)
        body = await request.body()
        if len(body) > cap:
            return _too_large(len(body), cap)
        try:
            body.decode("utf-8")
        except UnicodeDecodeError as exc:
            return JSONResponse(
                {"detail": f"request body is not valid UTF-8 (byte {exc.start})"},
                status_code=400,
            )
        found = body_problem(body)
        if found is not None:
            return JSONResponse({"detail": [found]}, status_code=422)
        return await call_next(request)

    install_error_handlers(app)
    app.include_router(api)
    return app


def encoder_from_env() -> Encoder | None:
    """The encoder ``$MODELTRIAGE_ENCODER_FACTORY`` names (``module:callable``), or None:
    the one router.yaml names."""
    spec = os.environ.get(ENCODER_FACTORY_ENV, "").strip()
    if not spec:
        return None
    module_name, _, attribute = spec.partition(":")
    try:
        factory = getattr(importlib.import_module(module_name), attribute)
    except (ImportError, AttributeError, ValueError) as exc:
        raise InputError(
            f"${ENCODER_FACTORY_ENV}={spec!r} names no importable callable: {exc}"
        ) from None
    encoder: Encoder = factory()
    return encoder


def app_from_env() -> FastAPI:
    """The app of one ``serve --workers N`` worker: it loads the index the parent built
    (never building one itself, so N workers do not race to build) and shares the
    decision log with its peers."""
    intents_dir = os.environ.get(INTENTS_ENV)
    if not intents_dir:
        raise InputError(
            f"${INTENTS_ENV} is not set: start workers with `modeltriage serve --workers N`"
        )
    workers = int(os.environ.get(WORKERS_ENV, "1"))
    return create_app(intents_dir, encoder=encoder_from_env(), peer_workers=workers > 1)
