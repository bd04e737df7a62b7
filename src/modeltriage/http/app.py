"""FastAPI service: ``create_app()`` returns an app that routes and never calls an LLM.

The router lives on ``app.state`` for the app's lifetime (set up in the lifespan), so
several apps with different intents can coexist in one process; so do the API keys
(``app.state.api_keys``) and the metrics (``app.state.metrics``).

Middleware, outermost first: :class:`~.observe.RequestObserver` (request id, metrics,
access log), CORS when origins are given, :class:`~.body_guard.BodyGuard` (415, body cap
and read timeout, NaN and surrogates refused).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from pathlib import Path

from modeltriage import __version__
from modeltriage.errors import MissingDependencyError
from modeltriage.router import Router

try:
    from fastapi import FastAPI
    from fastapi.middleware.cors import CORSMiddleware
except ImportError:  # pragma: no cover - exercised only without the extra
    raise MissingDependencyError("fastapi", "serve") from None

from modeltriage.http.auth import ApiKeys
from modeltriage.http.body_guard import BodyGuard
from modeltriage.http.error_responses import install_error_handlers
from modeltriage.http.metrics import ServiceMetrics
from modeltriage.http.observe import REQUEST_ID_HEADER, RequestObserver
from modeltriage.http.routes import api


def create_app(
    intents_dir: Path | str = "intents",
    *,
    router: Router | None = None,
    build_if_needed: bool = False,
    keys: ApiKeys | None = None,
    cors_origins: Sequence[str] = (),
) -> FastAPI:
    """Build the service. Pass ``router`` to serve an already loaded one (tests, CLI).

    ``keys``: the API keys (default: those of ``MODELTRIAGE_API_KEYS`` and
    ``MODELTRIAGE_ADMIN_KEYS``), kept on ``app.state.api_keys``. ``cors_origins``: the
    browser origins allowed to call the service (default none: CORS is off).
    """

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if router is not None:
            app.state.router = router
            yield  # the caller owns the router and closes it
            return
        app.state.router = Router.load(intents_dir, build_if_needed=build_if_needed)
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
    app.state.api_keys = ApiKeys.from_env() if keys is None else keys
    app.state.metrics = ServiceMetrics(lambda: getattr(app.state, "router", None))
    # Added innermost first: the request id and timing wrap everything, CORS answers
    # preflights before the body is read, the body guard runs last before the endpoint.
    app.add_middleware(BodyGuard)
    if cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=list(cors_origins),
            allow_methods=["GET", "POST", "DELETE"],
            allow_headers=["Authorization", "Content-Type", REQUEST_ID_HEADER],
            expose_headers=[REQUEST_ID_HEADER],
            max_age=600,
        )
    app.add_middleware(RequestObserver, metrics=app.state.metrics)
    install_error_handlers(app)
    app.include_router(api)
    return app
