"""The decision log's store contract (:class:`LogStore`): every store (memory, SQLite,
PostgreSQL) implements it; :mod:`.open` picks one by URL."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Protocol

from modeltriage.log.entries import Entry, EventEntry, FeedbackEntry, LogEntry


class LogStore(Protocol):
    """Where decisions and feedback are kept. Implementations are thread-safe."""

    url: str
    """Where the store lives, password masked."""

    def write_decisions(self, entries: Sequence[LogEntry]) -> None:
        """Write all entries in one transaction; an id already logged is skipped."""

    def write_feedback(self, entry: FeedbackEntry) -> None:
        """Append feedback; raises UnknownDecisionError when the decision was never logged."""

    def decisions(
        self, *, limit: int | None = None, since: datetime | None = None
    ) -> list[LogEntry]:
        """Logged decisions created at or after ``since``, newest first."""
        ...

    def feedback(self, decision_id: str | None = None) -> list[FeedbackEntry]:
        """Feedback (for one decision, or all), oldest first."""
        ...

    def decision(self, decision_id: str) -> LogEntry | None:
        """One logged decision, or None when the id was never logged."""
        ...

    def write_events(self, entries: Sequence[EventEntry]) -> None:
        """Append events in one transaction (an event's decision need not be logged); an
        ``event_id`` already stored is skipped."""

    def events(
        self, *, decision_id: str | None = None, since: datetime | None = None
    ) -> list[EventEntry]:
        """Events (for one decision, or all) created at or after ``since``, oldest first."""
        ...

    def mark_unhealthy(self, model: str, until: datetime) -> None:
        """Record that ``model`` is unhealthy until ``until`` (a later mark replaces it),
        for every router sharing this store."""

    def unhealthy_until(self, now: datetime) -> dict[str, datetime]:
        """Models marked unhealthy past ``now``, with the end of their cooldown."""
        ...

    def clear_unhealthy(self, model: str) -> bool:
        """Remove ``model``'s mark; False when it had none. (Expired marks are deleted
        whenever a mark is written and by :meth:`check_writable`.)"""
        ...

    def check_writable(self) -> None:
        """Raise LogStoreError unless the store takes writes now (readiness). The write
        changes nothing a reader sees: it deletes expired health marks."""

    def schema_version(self) -> int: ...

    def close(self) -> None: ...


def write_entries(store: LogStore, entries: Sequence[Entry]) -> None:
    """Write decisions, then events; repeating it after a failure writes nothing twice
    (decision and event ids are unique)."""
    store.write_decisions([e for e in entries if isinstance(e, LogEntry)])
    store.write_events([e for e in entries if isinstance(e, EventEntry)])
