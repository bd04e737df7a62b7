"""Sticky conversations: a conversation that reached a tier does not go down tiers for
its next ``conversation.sticky_turns`` turns. State with a clock, so it lives here and
the policy only sees the resulting lowest tier (``Constraints.min_tier``)."""

from __future__ import annotations

import threading
from collections import OrderedDict

from modeltriage.core.config import RouterConfig
from modeltriage.followup.model_health import Clock


class StickyConversations:
    """The highest tier each recent conversation reached; thread-safe, bounded by
    ``conversation.max_conversations`` (least recently seen dropped first)."""

    def __init__(self, config: RouterConfig, clock: Clock) -> None:
        self._settings = config.conversation
        self._tiers = config.tiers
        self._clock = clock
        # conversation_id -> (tier position, turns left, expiry time), least recent first
        self._states: OrderedDict[str, tuple[int, int, float]] = OrderedDict()
        # Guards the state only, not the routing: concurrent turns of one conversation
        # are rare, and serialising every sticky request would cost more.
        self._lock = threading.Lock()

    def min_tier(self, conversation_id: str) -> str | None:
        """The lowest tier this conversation may go to now; None when it is free."""
        with self._lock:
            state = self._states.get(conversation_id)
            if state is None:
                return None
            position, left, expires = state
            if expires <= self._clock() or left <= 0:
                del self._states[conversation_id]
                return None
            return self._tiers[position]

    def remember(self, conversation_id: str, tier: str) -> None:
        """Record the tier a turn of the conversation was routed to."""
        position = self._tiers.index(tier)
        with self._lock:
            expires = self._clock() + self._settings.ttl_s
            state = self._states.pop(conversation_id, None)
            if state is None or position > state[0]:
                # A new highest tier: stay there for the next sticky_turns turns.
                self._states[conversation_id] = (position, self._settings.sticky_turns, expires)
            else:
                self._states[conversation_id] = (state[0], state[1] - 1, expires)
            while len(self._states) > self._settings.max_conversations:
                self._states.popitem(last=False)
