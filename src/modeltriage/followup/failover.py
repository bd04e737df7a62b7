"""Failover: a model errored or timed out, which model of the chain comes next. Also
marking a model unhealthy, which every later decision and failover skips."""

from __future__ import annotations

import threading
from collections.abc import Sequence

from modeltriage.core.config import RouterConfig
from modeltriage.core.decision import Decision
from modeltriage.core.failover import Failover, next_model
from modeltriage.core.inputs import check_model
from modeltriage.errors import InputError
from modeltriage.followup.model_health import ModelHealth
from modeltriage.followup.records import DecisionRecords
from modeltriage.log.entries import EventEntry

Chain = Decision | str | Sequence[str]


class Failovers:
    """Answers failovers for one router and counts them; thread-safe."""

    def __init__(self, config: RouterConfig, records: DecisionRecords, health: ModelHealth) -> None:
        self._config = config
        self._records = records
        self._health = health
        self._count = 0
        self._lock = threading.Lock()

    @property
    def count(self) -> int:
        """How many failovers were asked since the router started."""
        return self._count

    def failover(self, chain: Chain, failed: str | Sequence[str]) -> Failover:
        """The model to try once ``failed`` failed: the first model after the last failed
        one in ``chain`` that has not failed and is not marked unhealthy; ``model`` None
        when none is left. ``chain`` is a decision, the id of a logged decision (a plain
        string; needs the decision log), or a model followed by its fallbacks. With a
        decision log, the failover is recorded as an event."""
        decision_id, names = self._chain(chain)
        failed_names = [failed] if isinstance(failed, str) else list(failed)
        if not names:
            raise InputError("the model chain is empty")
        if not failed_names:
            raise InputError("name at least one failed model")
        for name in names:
            check_model(self._config, name, "chain")
        for name in failed_names:
            check_model(self._config, name, "failed")
        with self._lock:
            self._count += 1
        result = next_model(names, set(failed_names), set(self._health.unhealthy()))
        detail = f"failed: {', '.join(failed_names)}; {result.reason}"
        self._records.record(
            EventEntry("failover", failed_names[-1], result.model, detail, decision_id)
        )
        return result

    def _chain(self, chain: Chain) -> tuple[str | None, list[str]]:
        if isinstance(chain, Decision):
            return chain.id, [chain.model, *chain.fallbacks]
        if not isinstance(chain, str):
            return None, list(chain)
        if any(m.name == chain for m in self._config.models):
            raise InputError(
                f"chain: {chain!r} is a model name; give a decision, a decision id or a "
                f"list of model names such as [{chain!r}]"
            )
        logged = self._records.decision(chain)
        return chain, [logged.model, *logged.fallbacks]

    def mark_unhealthy(self, model: str, cooldown_s: float | None = None) -> float:
        """Skip ``model`` in decisions and failovers for ``cooldown_s`` seconds (default
        ``health.cooldown_s``, at most ``health.max_cooldown_s``); returns the seconds
        left. Marking again restarts it. A refused cooldown marks nothing."""
        check_model(self._config, model, "mark_unhealthy")
        limit = self._config.health.max_cooldown_s
        if cooldown_s is None:
            cooldown_s = self._config.health.cooldown_s
        if isinstance(cooldown_s, bool) or not isinstance(cooldown_s, int | float):
            raise InputError(
                f"cooldown_s must be a number of seconds, got {type(cooldown_s).__name__}"
            )
        if not cooldown_s > 0:  # also refuses NaN
            raise InputError(f"cooldown_s must be more than 0 seconds, got {cooldown_s!r}")
        # Compared before any conversion: a 400-digit integer is over the limit, not an
        # OverflowError.
        if cooldown_s > limit:
            raise InputError(
                f"cooldown_s must be at most {limit:g} seconds (health.max_cooldown_s), "
                f"got {_seconds(cooldown_s)}"
            )
        return self._health.mark(model, float(cooldown_s))

    def clear_unhealthy(self, model: str) -> bool:
        """Clear ``model``'s unhealthy mark at once; False when it had none."""
        check_model(self._config, model, "clear_unhealthy")
        return self._health.clear(model)


def _seconds(value: float) -> str:
    """A number for a message; a huge integer is described, not printed (printing one
    of thousands of digits fails)."""
    if isinstance(value, int) and value.bit_length() > 64:
        return f"an integer of {value.bit_length()} bits"
    return f"{value:g}"
