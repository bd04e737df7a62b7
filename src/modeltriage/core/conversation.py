"""Which text of a multi-turn conversation is routed."""

from __future__ import annotations

from collections.abc import Sequence

from modeltriage.core.decision import Message


def conversation_text(messages: Sequence[Message], short_turn_words: int) -> str | None:
    """The text to route for a conversation: its last user turn, after the previous user
    turn when the last one is short ("and in red?" means nothing alone). None when there
    is no user turn with text."""
    turns = [m.content for m in messages if m.role == "user" and m.content.strip()]
    if not turns:
        return None
    last = turns[-1]
    if len(turns) > 1 and len(last.split()) < short_turn_words:
        return f"{turns[-2]} {last}"
    return last
