"""FastAPI service: ``create_app()`` returns an app that routes and never calls an LLM.

The router lives on ``app.state`` for the app's lifetime (set up in the lifespan), so
several apps with different intents can coexist in one process.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path

from modeltriage import __version__
from modeltriage.errors import MissingDependencyError
from modeltriage.router import Router

try:
    from fastapi import FastAPI, Request, Response
    from fastapi.responses import JSONResponse
except ImportError:  # pragma: no cover - exercised only without the extra
    raise MissingDependencyError("fastapi", "serve") from None

from modeltriage.http.batcher import MicroBatcher
from modeltriage.http.body_checks import body_problem
from modeltriage.http.error_responses import install_error_handlers
from modeltriage.http.routes import api, current

# JSON escaping can at most multiply a text's bytes by six ("\u00e9"-style escapes).
_JSON_OVERHEAD = 6


def _too_large(size: int, cap: int) -> JSONResponse:
    return JSONResponse(
        {"detail": f"request body of {size} bytes is over the limit of {cap}"}, status_code=413
    )


@asynccontextmanager
async def batching(app: FastAPI) -> AsyncIterator[None]:
    """The app's micro-batcher for /route and /route/batch, for the app's lifetime."""
    routed: Router = app.state.router
    serving = routed.config.serving
    app.state.batcher = MicroBatcher(
        routed.route_many,
        wait_s=serving.batch_wait_ms / 1000,
        max_batch=serving.max_batch,
        queue_size=serving.queue_size,
    )
    app.state.batcher.start()
    try:
        yield
    finally:
        await app.state.batcher.close()


def create_app(
    intents_dir: Path | str = "intents",
    *,
    router: Router | None = None,
    build_if_needed: bool = False,
) -> FastAPI:
    """Build the service. Pass ``router`` to serve an already loaded one (tests, CLI)."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if router is not None:
            app.state.router = router
            async with batching(app):
                yield  # the caller owns the router and closes it
            return
        app.state.router = Router.load(intents_dir, build_if_needed=build_if_needed)
        try:
            async with batching(app):
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
