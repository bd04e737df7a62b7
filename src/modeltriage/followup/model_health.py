"""Which models are marked unhealthy, until when. Thread-safe.

Kept out of the policy: this is state with a clock. The policy only sees a snapshot
(the set of unhealthy names), so it stays pure.

Marks live in the router's memory; with a shared store (the decision log's, so
PostgreSQL for a fleet), each mark is also written there and every router reading the
same store skips the model too. The store is read at most every ``refresh_s`` seconds,
so routing does not query it per request.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from typing import Protocol

Clock = Callable[[], float]
_log = logging.getLogger(__name__)


class HealthStore(Protocol):
    """The part of a log store that shares health marks (see
    :class:`modeltriage.log.store.LogStore`)."""

    url: str

    def mark_unhealthy(self, model: str, until: datetime) -> None: ...

    def unhealthy_until(self, now: datetime) -> dict[str, datetime]: ...

    def clear_unhealthy(self, model: str) -> bool: ...


def _wall_now() -> datetime:
    return datetime.fromtimestamp(time.time(), tz=timezone.utc)


class ModelHealth:
    """Models marked unhealthy for a cooldown; the clocks are injectable for tests."""

    def __init__(
        self,
        clock: Clock,
        shared: HealthStore | None = None,
        *,
        refresh_s: float = 2.0,
        wall: Callable[[], datetime] = _wall_now,
    ) -> None:
        self._clock = clock
        self._until: dict[str, float] = {}
        self._lock = threading.Lock()
        self._shared = shared
        self._refresh_s = refresh_s
        self._wall = wall
        self._snapshot: dict[str, datetime] = {}
        self._read_at: float | None = None
        self._refreshing = False
        # When each model was last cleared: a shared read begun before it is stale.
        self._cleared: dict[str, datetime] = {}

    @property
    def shared(self) -> bool:
        return self._shared is not None

    def mark(self, model: str, cooldown_s: float) -> float:
        """Mark ``model`` unhealthy for ``cooldown_s`` seconds from now (a later mark
        replaces an earlier one); returns the seconds left. The caller bounds
        ``cooldown_s`` (``health.max_cooldown_s``); the shared end is computed before
        anything is marked, so a cooldown past the calendar marks nothing."""
        until = self._wall() + timedelta(seconds=cooldown_s)
        with self._lock:
            self._until[model] = self._clock() + cooldown_s
        if self._shared is not None:
            try:
                self._shared.mark_unhealthy(model, until)
            except Exception as exc:  # the local mark still holds: failover must not fail
                _log.warning(
                    "health: cannot share the mark of %s through %s: %s",
                    model,
                    self._shared.url,
                    exc,
                )
            with self._lock:
                self._snapshot[model] = until
        return cooldown_s

    def clear(self, model: str) -> bool:
        """Forget ``model``'s mark, here and in the shared store; False when it had none.
        A store that cannot be reached is logged and the local mark still goes: clearing
        is how an operator undoes a wrong mark."""
        with self._lock:
            had = self._until.pop(model, None) is not None
            had = self._snapshot.pop(model, None) is not None or had
            self._cleared[model] = self._wall()
        if self._shared is not None:
            try:
                had = self._shared.clear_unhealthy(model) or had
            except Exception as exc:
                _log.warning(
                    "health: cannot clear the shared mark of %s in %s: %s",
                    model,
                    self._shared.url,
                    exc,
                )
        return had

    def _refresh(self) -> None:
        assert self._shared is not None
        began = self._wall()
        try:
            snapshot = self._shared.unhealthy_until(began)
        except Exception as exc:
            _log.warning("health: cannot read shared marks from %s: %s", self._shared.url, exc)
            snapshot = None
        with self._lock:
            self._refreshing = False
            if snapshot is not None:
                # Marks only ever expire, so the later end wins: a mark made here while
                # the read was in flight is kept.
                merged = dict(self._snapshot)
                for model, until in snapshot.items():
                    cleared = self._cleared.get(model)
                    if cleared is not None and cleared >= began:
                        continue
                    merged[model] = max(until, merged.get(model, until))
                self._snapshot = merged

    def refresh(self) -> None:
        """Read the shared marks now (a router does it in the background on its own)."""
        if self._shared is not None:
            with self._lock:
                self._refreshing = True
                self._read_at = self._clock()
            self._refresh()

    def _shared_marks(self, now: float) -> dict[str, float]:
        if self._shared is None:
            return {}
        with self._lock:
            due = not self._refreshing and (
                self._read_at is None or now - self._read_at >= self._refresh_s
            )
            if due:
                self._refreshing = True
                self._read_at = now
        if due:
            # Off the request path: a slow or unreachable database must not slow routing.
            threading.Thread(target=self._refresh, name="modeltriage-health", daemon=True).start()
        wall = self._wall()
        with self._lock:
            return {
                m: (until - wall).total_seconds()
                for m, until in self._snapshot.items()
                if until > wall
            }

    def unhealthy(self) -> dict[str, float]:
        """Unhealthy models with their seconds left; expired marks are forgotten."""
        now = self._clock()
        shared = self._shared_marks(now)
        with self._lock:
            for model in [m for m, until in self._until.items() if until <= now]:
                del self._until[model]
            left = {model: until - now for model, until in self._until.items()}
        for model, seconds in shared.items():
            left[model] = max(seconds, left.get(model, 0.0))
        return dict(sorted(left.items()))
