"""FastAPI service: ``create_app()`` returns an app that routes and never calls an LLM.

The router lives on ``app.state`` for the app's lifetime (set up in the lifespan), so
several apps with different intents can coexist in one process. ``app.state.holder`` (a
:class:`~modeltriage.reloader.ServingRouter`) swaps it on a reload; ``app.state.router`` is
the router that serves now.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path

from modeltriage import __version__
from modeltriage.errors import MissingDependencyError
from modeltriage.reloader import ServingRouter
from modeltriage.router import Router

try:
    from fastapi import FastAPI, Request, Response
    from fastapi.responses import JSONResponse
except ImportError:  # pragma: no cover - exercised only without the extra
    raise MissingDependencyError("fastapi", "serve") from None

from modeltriage.http.body_checks import body_problem
from modeltriage.http.error_responses import install_error_handlers
from modeltriage.http.reload import reload_api, reload_triggers
from modeltriage.http.routes import api, current

# JSON escaping can at most multiply a text's bytes by six ("\u00e9"-style escapes).
_JSON_OVERHEAD = 6


def _too_large(size: int, cap: int) -> JSONResponse:
    return JSONResponse(
        {"detail": f"request body of {size} bytes is over the limit of {cap}"}, status_code=413
    )


def create_app(
    intents_dir: Path | str = "intents",
    *,
    router: Router | None = None,
    holder: ServingRouter | None = None,
    build_if_needed: bool = False,
    watch: bool = False,
) -> FastAPI:
    """Build the service. Pass ``router`` to serve an already loaded one (tests; the
    caller closes it; there is nothing to reload it from), or a ``holder`` (the CLI: the
    app closes it at shutdown, after the last request). ``watch``: reload when a YAML
    file of the intents directory changes."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if router is not None:
            app.state.holder = ServingRouter(router)
        elif holder is not None:
            app.state.holder = holder
        else:
            app.state.holder = ServingRouter.load(intents_dir, build_if_needed=build_if_needed)
        app.state.router = app.state.holder.router
        try:
            async with reload_triggers(app, watch=watch):
                yield
        finally:
            # Uvicorn ends the lifespan after the last request: flushing the decision
            # log now loses no acknowledged row.
            app.state.holder.close()

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
    app.include_router(reload_api)
    return app
