"""The decision log as seen after a decision: feedback, lookups by id, and the events
(failovers, answer checks) recorded against a decision."""

from __future__ import annotations

from modeltriage.errors import LogStoreError, UnknownDecisionError
from modeltriage.log.entries import EventEntry, FeedbackEntry, LogEntry
from modeltriage.log.writer import DecisionLogger


class DecisionRecords:
    """Reads and writes of one router's decision log; every method but :meth:`record`
    refuses with ``LogStoreError`` when logging is off."""

    def __init__(self, logger: DecisionLogger | None) -> None:
        self.logger = logger

    def _require(self, why: str) -> DecisionLogger:
        if self.logger is None:
            raise LogStoreError(f"decision logging is off{why}: set log.url in router.yaml")
        return self.logger

    def feedback(
        self, decision_id: str, quality: float, *, source: str = "user", model: str | None = None
    ) -> None:
        """Attach a quality signal (0..1) to a logged decision.

        Raises ``UnknownDecisionError`` for an id never logged. Every call adds a row:
        repeated feedback is kept with its time.
        """
        self._require("").write_feedback(
            FeedbackEntry(decision_id=decision_id, quality=quality, source=source, model=model)
        )

    def decision(self, decision_id: str) -> LogEntry:
        """A logged decision, by id: its model, fallbacks and cascade plan included.
        Raises ``UnknownDecisionError`` for an id never logged."""
        logger = self._require(", so decisions cannot be looked up by id")
        found = logger.decision(decision_id)
        if found is None:
            raise UnknownDecisionError(decision_id)
        return found

    def events(self, decision_id: str) -> list[EventEntry]:
        """The failovers and answer checks recorded for a logged decision, oldest first
        (waits for the log's queue first, so an event just recorded is included)."""
        logged = self.decision(decision_id)
        logger = self._require("")
        logger.flush(timeout=5.0)
        return logger.store.events(decision_id=logged.decision_id)

    def record(self, event: EventEntry) -> None:
        """Log an event as decisions are logged: with ``log.durability: ack`` it is
        committed before this returns (or ``LogStoreError``: the caller must not report
        it done); with ``async`` it is queued, and a full queue drops and counts it.
        Without a log it is dropped."""
        if self.logger is not None:
            self.logger.record(event)
