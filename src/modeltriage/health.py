"""Which models are marked unhealthy, until when. In memory, per router, thread-safe.

Kept out of the policy: this is state with a clock. The policy only sees a snapshot
(the set of unhealthy names), so it stays pure.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

Clock = Callable[[], float]


class ModelHealth:
    """Models marked unhealthy for a cooldown; the clock is injectable for tests."""

    def __init__(self, clock: Clock) -> None:
        self._clock = clock
        self._until: dict[str, float] = {}
        self._lock = threading.Lock()

    def mark(self, model: str, cooldown_s: float) -> float:
        """Mark ``model`` unhealthy for ``cooldown_s`` seconds from now (a later mark
        replaces an earlier one); returns the seconds left."""
        with self._lock:
            self._until[model] = self._clock() + cooldown_s
        return cooldown_s

    def unhealthy(self) -> dict[str, float]:
        """Unhealthy models with their seconds left; expired marks are forgotten."""
        now = self._clock()
        with self._lock:
            for model in [m for m, until in self._until.items() if until <= now]:
                del self._until[model]
            return {model: until - now for model, until in sorted(self._until.items())}
