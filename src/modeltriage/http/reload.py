"""The service's three reload triggers: ``POST /admin/reload`` (admin role), SIGHUP, and an
opt-in watch of the intent files. Each calls :meth:`ServingRouter.reload` (the library does
the loading, the checks and the swap) and points ``app.state.router`` at what now serves.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import threading
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

from fastapi import APIRouter, Depends, FastAPI, Request
from fastapi.responses import JSONResponse

from modeltriage.errors import MissingDependencyError
from modeltriage.http.auth import require_admin
from modeltriage.http.error_responses import error_docs
from modeltriage.http.schemas import ReloadHealth, ReloadResponse
from modeltriage.reloader import ReloadOutcome, ServingRouter

_log = logging.getLogger(__name__)
# watchfiles gathers the changes of this many milliseconds into one reload: an editor's
# save (temporary file, rename) or a `git checkout` of several files is one event.
WATCH_DEBOUNCE_MS = 500

reload_api = APIRouter()


def holder_of(app: FastAPI) -> ServingRouter:
    holder: ServingRouter = app.state.holder
    return holder


def reload_now(app: FastAPI, trigger: str) -> ReloadOutcome:
    """Reload and point the app at whatever serves afterwards (blocking: call it from a
    worker thread)."""
    holder = holder_of(app)
    outcome = holder.reload(trigger)
    app.state.router = holder.router
    metrics = getattr(app.state, "metrics", None)
    if metrics is not None:
        metrics.reloaded(outcome.ok)
    return outcome


def reload_health(app: FastAPI) -> ReloadHealth:
    holder = holder_of(app)
    last = holder.last_outcome
    return ReloadHealth(
        serving=holder.serving,
        reloads=holder.reloads,
        failed_reloads=holder.failed_reloads,
        last_error=holder.last_error,
        last_reload_at=None if last is None else last.at,
        watch=bool(getattr(app.state, "watching", False)),
    )


@reload_api.post(
    "/admin/reload",
    response_model=ReloadResponse,
    dependencies=[Depends(require_admin)],
    summary="Load the intent files again; on an error the running router keeps serving",
    responses={
        **error_docs(401, 403, 503),
        409: {
            "model": ReloadResponse,
            "description": "the new files were refused; the old router serves",
        },
    },
)
def admin_reload(request: Request) -> JSONResponse:
    outcome = reload_now(request.app, "api")
    body = ReloadResponse(
        reloaded=outcome.ok,
        index_version=outcome.index_version,
        previous_version=outcome.previous_version,
        error=outcome.error,
        notes=outcome.notes,
        took_ms=outcome.took_ms,
    )
    return JSONResponse(body.model_dump(), status_code=200 if outcome.ok else 409)


@contextlib.asynccontextmanager
async def reload_triggers(app: FastAPI, *, watch: bool) -> AsyncIterator[None]:
    """For the app's lifespan: SIGHUP reloads (when serving from the main thread, where
    signals arrive), and with ``watch`` so does a change to a YAML file of the intents."""
    loop = asyncio.get_running_loop()
    running: set[asyncio.Future[ReloadOutcome]] = set()

    def trigger(name: str) -> None:
        future = loop.run_in_executor(None, reload_now, app, name)
        running.add(future)
        future.add_done_callback(running.discard)

    hup = threading.current_thread() is threading.main_thread() and hasattr(signal, "SIGHUP")
    if hup:
        loop.add_signal_handler(signal.SIGHUP, trigger, "SIGHUP")
    stop = asyncio.Event()
    watcher = None
    directory = holder_of(app).intents_dir
    if watch and directory is not None:
        _watchfiles()  # a missing extra fails the start, not the first change
        watcher = asyncio.create_task(_watch(directory, stop, trigger))
        app.state.watching = True
    try:
        yield
    finally:
        if hup:
            loop.remove_signal_handler(signal.SIGHUP)
        stop.set()
        if watcher is not None:
            await watcher
        if running:
            await asyncio.gather(*running, return_exceptions=True)


def _watchfiles() -> Any:
    try:
        import watchfiles
    except ImportError:
        raise MissingDependencyError("watchfiles", "serve") from None
    return watchfiles


def _is_intent_file(directory: Path, path: str) -> bool:
    changed = Path(path)
    return changed.parent == directory and changed.suffix in (".yaml", ".yml")


async def _watch(directory: Path, stop: asyncio.Event, trigger: Callable[[str], None]) -> None:
    resolved = directory.resolve()
    try:
        async for _changes in _watchfiles().awatch(
            resolved,
            watch_filter=lambda _change, path: _is_intent_file(resolved, path),
            debounce=WATCH_DEBOUNCE_MS,
            recursive=False,
            stop_event=stop,
        ):
            trigger("watch")
    except Exception as exc:  # a broken watch must not take the service down
        _log.error("watching %s stopped: %s", directory, exc)
