"""FastAPI service: ``create_app()`` returns an app that routes and never calls an LLM.

The router lives on ``app.state`` for the app's lifetime (set up in the lifespan), so
several apps with different intents can coexist in one process. ``app.state.holder`` (a
:class:`~modeltriage.reloader.ServingRouter`) swaps it on a reload; ``app.state.router`` is
the router that serves now.
The API keys (``app.state.api_keys``) and the metrics (``app.state.metrics``) live there too.

Middleware, outermost first: :class:`~.observe.RequestObserver` (request id, metrics,
access log), CORS when origins are given, :class:`~.body_guard.BodyGuard` (415, body cap
and read timeout, NaN and surrogates refused).
:func:`app_from_env` is the factory uvicorn's worker processes import (``serve --workers
N``): it reads its settings from the environment the ``serve`` command sets.
"""

from __future__ import annotations

import importlib
import os
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from pathlib import Path

from modeltriage import __version__
from modeltriage.core.decision import Decision
from modeltriage.core.encoders import Encoder
from modeltriage.core.options import RouteOptions
from modeltriage.core.vector_index import limit_search_threads
from modeltriage.errors import InputError, MissingDependencyError
from modeltriage.reloader import ServingRouter
from modeltriage.router import Router

try:
    from fastapi import FastAPI
    from fastapi.middleware.cors import CORSMiddleware
except ImportError:  # pragma: no cover - exercised only without the extra
    raise MissingDependencyError("fastapi", "serve") from None

from modeltriage.http.auth import CORS_ENV, ApiKeys
from modeltriage.http.batcher import MicroBatcher
from modeltriage.http.body_guard import BodyGuard
from modeltriage.http.error_responses import install_error_handlers
from modeltriage.http.explore import install_explorer
from modeltriage.http.metrics import ServiceMetrics
from modeltriage.http.observe import (
    LOG_FORMAT_ENV,
    REQUEST_ID_HEADER,
    RequestObserver,
    json_logging,
)
from modeltriage.http.reload import reload_api, reload_triggers
from modeltriage.http.routes import api
from modeltriage.learn.explore_samples import SampleCache

# What `serve --workers N` hands its worker processes.
INTENTS_ENV = "MODELTRIAGE_SERVE_INTENTS"
WORKERS_ENV = "MODELTRIAGE_SERVE_WORKERS"
SAMPLES_ENV = "MODELTRIAGE_SERVE_SAMPLES"  # `serve --samples`, for each worker's explorer
# "module:callable" returning an Encoder: a custom (or, in tests, the fake) encoder that
# worker processes can build themselves, since an encoder object cannot cross into them.
ENCODER_FACTORY_ENV = "MODELTRIAGE_ENCODER_FACTORY"
# How long a worker waits for a decision another worker may still hold in its queue
# (its writer flushes every 0.2 s).
PEER_GRACE_S = 1.0
# The explorer's samples: the shipped traffic sample, relative to where the service runs.
DEFAULT_SAMPLES_DIR = Path("examples/traffic")


@asynccontextmanager
async def batching(app: FastAPI) -> AsyncIterator[None]:
    """The app's micro-batcher for /route and /route/batch, for the app's lifetime."""
    routed: Router = app.state.router
    serving = routed.config.serving

    def route_many(requests: Sequence[tuple[str, RouteOptions]]) -> list[Decision | InputError]:
        # Read at every batch: after a reload, the next batch goes to the new router.
        now: Router = app.state.router
        if serving.search_threads is not None:
            # Per thread, and the batches run on a pool's threads: set it where it searches.
            limit_search_threads(serving.search_threads)
        return now.route_many(requests)

    # The batch settings are the first router's: a changed `serving:` applies at restart.
    app.state.batcher = MicroBatcher(
        route_many,
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
    holder: ServingRouter | None = None,
    build_if_needed: bool = False,
    watch: bool = False,
    keys: ApiKeys | None = None,
    cors_origins: Sequence[str] = (),
    encoder: Encoder | None = None,
    peer_workers: bool = False,
    samples_dir: Path | str = DEFAULT_SAMPLES_DIR,
) -> FastAPI:
    """Build the service. Pass ``router`` to serve an already loaded one (tests; the
    caller closes it; there is nothing to reload it from), or a ``holder`` (the CLI: the
    app closes it at shutdown, after the last request). ``watch``: reload when a YAML
    file of the intents directory changes.

    ``keys``: the API keys (default: those of ``MODELTRIAGE_API_KEYS`` and
    ``MODELTRIAGE_ADMIN_KEYS``), kept on ``app.state.api_keys``. ``cors_origins``: the
    browser origins allowed to call the service (default none: CORS is off).
    ``encoder``: the encoder to load with (default: the one router.yaml names).
    ``peer_workers``: other processes log to the same store, so a decision id not found
    yet may still be in another worker's queue (see :data:`PEER_GRACE_S`).
    ``samples_dir``: the traffic files the explorer (/ui) may sweep.
    """

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if router is not None:
            app.state.holder = ServingRouter(router)
        elif holder is not None:
            app.state.holder = holder
        else:
            app.state.holder = ServingRouter.load(
                intents_dir, encoder=encoder, build_if_needed=build_if_needed
            )
        app.state.router = app.state.holder.router
        logger = app.state.router.logger
        if peer_workers and logger is not None:
            # Every generation shares this logger, so this holds across reloads.
            logger.peer_grace_s = PEER_GRACE_S
        app.state.samples = SampleCache(app.state.router, Path(samples_dir))
        try:
            async with reload_triggers(app, watch=watch), batching(app):
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
    app.include_router(reload_api)
    install_explorer(app)
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
    if os.environ.get(LOG_FORMAT_ENV) == "json":
        json_logging()
    origins = [o.strip() for o in os.environ.get(CORS_ENV, "").split(",")]
    return create_app(
        intents_dir,
        encoder=encoder_from_env(),
        peer_workers=workers > 1,
        cors_origins=[o for o in origins if o],
        samples_dir=samples_dir_from_env(),
    )


def samples_dir_from_env() -> Path:
    """The explorer's traffic files of a `serve --workers N` worker or a Ray replica: what
    the parent's `--samples` resolved to, else the default."""
    return Path(os.environ.get(SAMPLES_ENV) or DEFAULT_SAMPLES_DIR)
