"""Hot reload: :class:`ServingRouter` holds the router a service answers with and swaps in
a new one when the intent files change, without ever serving from a broken edit.

:meth:`ServingRouter.reload` loads and validates router.yaml and the intent files, loads
(or builds) their index, and only then swaps the new router in, in one assignment.
Requests already running keep the router they started with: nothing of it is closed,
because every router of a :class:`ServingRouter` shares one decision logger, which is
closed only with the holder. On any failure the old router keeps serving and the error,
its file:line relative to the intents directory, is kept for ``/healthz``.

Each successful load records the build and the validated intents it served
(``last-good.json``, see :mod:`modeltriage.core.index_builds`), so a start with broken
files can still serve the last good index when asked to (``keep_last_good``).
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from types import TracebackType

from modeltriage.core.encoders import Encoder
from modeltriage.core.index import LoadedIndex, exemplar_rows, load_build
from modeltriage.core.index_builds import read_last_good, save_last_good
from modeltriage.core.intents import IntentSet, load_intents
from modeltriage.errors import ConfigError, IndexStateError, ModelTriageError
from modeltriage.followup.model_health import Clock
from modeltriage.loading import encoder_for, index_for, open_logger
from modeltriage.log.store import LogStore
from modeltriage.log.writer import DecisionLogger
from modeltriage.router import Router

_log = logging.getLogger(__name__)
# The index directory --keep-last-good looks in when router.yaml cannot be read.
_DEFAULT_INDEX_DIR = ".index"


@dataclass(frozen=True)
class ReloadOutcome:
    """What one reload did: ``ok`` False means the previous router still serves."""

    ok: bool
    trigger: str
    index_version: str
    previous_version: str
    error: str | None = None
    notes: list[str] = field(default_factory=list)
    at: str = ""
    took_ms: float = 0.0


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def describe(exc: BaseException, intents_dir: Path | None) -> str:
    """An error as one line, paths relative to ``intents_dir`` (``/healthz`` shows it and
    must not leak where the service is installed)."""
    if isinstance(exc, ConfigError) and exc.path is not None and intents_dir is not None:
        with contextlib.suppress(ValueError):
            where = exc.path.resolve().relative_to(intents_dir.resolve())
            if where == Path("."):
                return f"the intents directory: {exc.detail}"
            line = "" if exc.line is None else f":{exc.line}"
            return f"{where}{line}: {exc.detail}"
    text = str(exc)
    if intents_dir is not None:
        for prefix in {str(intents_dir.resolve()), str(intents_dir)}:
            text = text.replace(prefix + "/", "")
    return text


class ServingRouter:
    """The router a service answers with, swapped atomically by :meth:`reload`.

    Read :attr:`router` once per request and use that object for the whole request.
    ``intents_dir`` None: a router handed over as is, with nothing to reload from.
    """

    def __init__(
        self,
        router: Router,
        *,
        intents_dir: Path | str | None = None,
        encoder: Encoder | None = None,
        build_if_needed: bool = False,
        clock: Clock = time.monotonic,
        owns_logger: bool = False,
    ) -> None:
        self._router = router
        self.intents_dir = None if intents_dir is None else Path(intents_dir)
        self._encoder = encoder  # injected: every reload uses it
        self._build_if_needed = build_if_needed
        self._clock = clock
        self._owns_logger = owns_logger
        self._lock = threading.Lock()
        self.reloads = 0
        self.failed_reloads = 0
        self.last_error: str | None = None
        self.last_outcome: ReloadOutcome | None = None
        self.serving = "intents"
        """``intents``: the intent files as they are; ``last-good``: the last good index,
        because the files could not be served (see :attr:`last_error`)."""

    @classmethod
    def load(
        cls,
        intents_dir: Path | str = "intents",
        *,
        encoder: Encoder | None = None,
        build_if_needed: bool = False,
        keep_last_good: bool = False,
        log: bool | str | LogStore = True,
        clock: Clock = time.monotonic,
    ) -> ServingRouter:
        """Load the intents and their index (see :meth:`Router.load`). ``keep_last_good``:
        when that fails, serve the last good index instead, or raise the first error."""
        directory = Path(intents_dir)
        try:
            intent_set, chosen, build, index = _load(directory, encoder, None, build_if_needed)
            serving, error = "intents", None
        except (ConfigError, IndexStateError) as exc:
            if not keep_last_good:
                raise
            intent_set, chosen, build, index = _load_last_good(directory, encoder, exc)
            serving, error = "last-good", describe(exc, directory)
        logger = open_logger(intent_set, log)
        router = Router(intent_set, chosen, index, logger, clock=clock)
        holder = cls(
            router,
            intents_dir=directory,
            encoder=encoder,
            build_if_needed=build_if_needed,
            clock=clock,
            owns_logger=True,
        )
        holder.serving, holder.last_error = serving, error
        if serving == "intents":
            _record_last_good(intent_set, build)
        return holder

    @property
    def router(self) -> Router:
        return self._router

    @property
    def logger(self) -> DecisionLogger | None:
        return self._router.logger

    def reload(self, trigger: str = "api") -> ReloadOutcome:
        """Load the intent files again and swap the new router in; on failure keep the
        old one. Never raises a library error: the outcome says what happened."""
        with self._lock:
            started = time.perf_counter()
            old = self._router
            try:
                new, notes = self._next_router(old)
            except ModelTriageError as exc:
                outcome = self._failed(trigger, old, describe(exc, self.intents_dir), started)
            else:
                self._router = new  # the swap: one reference assignment
                self.serving, self.last_error = "intents", None
                self.reloads += 1
                outcome = ReloadOutcome(
                    ok=True,
                    trigger=trigger,
                    index_version=new.manifest.version,
                    previous_version=old.manifest.version,
                    notes=notes,
                    at=_now(),
                    took_ms=round((time.perf_counter() - started) * 1000, 1),
                )
                _log.warning(
                    "reload (%s): serving index %s (was %s)%s",
                    trigger,
                    outcome.index_version,
                    outcome.previous_version,
                    "".join(f"; {note}" for note in notes),
                )
            self.last_outcome = outcome
            return outcome

    def _failed(self, trigger: str, old: Router, error: str, started: float) -> ReloadOutcome:
        self.failed_reloads += 1
        self.last_error = error
        _log.error(
            "reload (%s) failed, still serving index %s: %s", trigger, old.manifest.version, error
        )
        return ReloadOutcome(
            ok=False,
            trigger=trigger,
            index_version=old.manifest.version,
            previous_version=old.manifest.version,
            error=error,
            at=_now(),
            took_ms=round((time.perf_counter() - started) * 1000, 1),
        )

    def _next_router(self, old: Router) -> tuple[Router, list[str]]:
        if self.intents_dir is None:
            raise ConfigError("this service was given a router, not an intents directory")
        intent_set, encoder, build, index = _load(
            self.intents_dir, self._encoder, old, self._build_if_needed
        )
        notes = []
        if intent_set.config.log != old.config.log:
            notes.append("log settings changed: they apply at the next restart")
        new = Router(intent_set, encoder, index, old.logger, clock=self._clock)
        for model, left in old.unhealthy_models().items():
            # A model the new config no longer has, or a cooldown over its new cap, is
            # simply not carried over.
            with contextlib.suppress(ModelTriageError):
                new.mark_unhealthy(model, min(left, intent_set.config.health.max_cooldown_s))
        _record_last_good(intent_set, build)
        return new, notes

    def close(self) -> None:
        """Flush and close the shared decision log. Idempotent."""
        if self._owns_logger and self.logger is not None:
            self.logger.close()

    def __enter__(self) -> ServingRouter:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


def _load(
    directory: Path, encoder: Encoder | None, old: Router | None, build_if_needed: bool
) -> tuple[IntentSet, Encoder, str | None, LoadedIndex]:
    intent_set = load_intents(directory)
    if encoder is None:
        same = old is not None and old.config.encoder == intent_set.config.encoder
        # Reuse the loaded model when the encoder settings did not change.
        encoder = (
            old.encoder
            if same and old is not None
            else encoder_for(intent_set, export=build_if_needed)
        )
    try:
        index = index_for(intent_set, encoder, build_if_needed=build_if_needed)
    except IndexStateError as exc:
        if build_if_needed or old is None:
            raise
        raise type(exc)(f"{exc}; then reload (SIGHUP or POST /admin/reload)") from None
    return intent_set, encoder, index.build, index


def _load_last_good(
    directory: Path, encoder: Encoder | None, cause: ModelTriageError
) -> tuple[IntentSet, Encoder, str | None, LoadedIndex]:
    index_dir = directory / _DEFAULT_INDEX_DIR
    with contextlib.suppress(ModelTriageError):
        index_dir = load_intents(directory).index_path
    try:
        build, intent_set, _ = read_last_good(index_dir, directory)
        encoder = encoder_for(intent_set) if encoder is None else encoder
        index = load_build(
            build, exemplar_rows(intent_set.intents), encoder, intent_set.config.scoring
        )
    except ModelTriageError as exc:
        raise type(cause)(f"{cause}; and --keep-last-good found no usable index: {exc}") from None
    return intent_set, encoder, build.name, index


def _record_last_good(intent_set: IntentSet, build: str | None) -> None:
    if build is None:
        return
    try:
        save_last_good(intent_set.index_path, build, intent_set)
    except OSError as exc:  # a read-only index directory still serves
        _log.warning("cannot record the last good index: %s", exc)
