"""The decision log's writer: every routed request is recorded off the request path,
and what cannot be written is spooled to a file.

:class:`DecisionLogger` puts a bounded queue and a writer thread in front of a store
(:class:`~modeltriage.log.store.LogStore`, see :func:`~modeltriage.log.store.open_store`)
so logging never slows routing down (``durability="async"``: a hard kill loses at most the
last ``flush_interval_s`` of decisions), or, with ``durability="ack"``, makes each caller of
:meth:`DecisionLogger.log_all` (decisions) and :meth:`DecisionLogger.record` (failover and
answer-check events) wait until its entries are committed: concurrent callers share one
commit (group commit). :func:`write_spool` and :func:`read_spool` keep what
it cannot write, to be replayed with :func:`~modeltriage.log.store.write_entries`.
"""

from __future__ import annotations

import atexit
import contextlib
import json
import logging
import threading
import time
from collections import deque
from collections.abc import Sequence
from pathlib import Path
from typing import Literal

from modeltriage.core.decision import Decision
from modeltriage.errors import LogStoreError, ModelTriageError, UnknownDecisionError
from modeltriage.log.entries import Entry, EventEntry, FeedbackEntry, LogEntry, Metadata
from modeltriage.log.store import LogStore, write_entries

_log = logging.getLogger(__name__)

Durability = Literal["ack", "async"]

# --------------------------------------------------------------------------- spool


def write_spool(path: Path | str, entries: Sequence[Entry]) -> None:
    """Append entries to a JSON-lines file that :func:`read_spool` can load back."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    with target.open("a", encoding="utf-8") as handle:
        for entry in entries:
            # Decisions stay bare objects, as spools written before events were.
            data = entry.to_json_dict()
            line = {"event": data} if isinstance(entry, EventEntry) else data
            handle.write(json.dumps(line) + "\n")


def read_spool(path: Path | str) -> list[Entry]:
    """The entries a logger spooled; replay them with :func:`write_entries`."""
    source = Path(path)
    entries: list[Entry] = []
    with source.open(encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                data = json.loads(line)
                if "event" in data:
                    entries.append(EventEntry.from_json_dict(data["event"]))
                else:
                    entries.append(LogEntry.from_json_dict(data))
            except (ValueError, TypeError, KeyError) as exc:
                raise LogStoreError(
                    f"line {number} is not a spooled decision or event: {exc}", str(source)
                ) from exc
    return entries


# --------------------------------------------------------------------------- logger


class DecisionLogger:
    """Writes entries to a store from a background thread so routing never waits on I/O.

    :meth:`submit` never blocks: when ``queue_size`` entries are already waiting the new
    one is dropped and counted. A failing store is retried with backoff for as long as
    the process lives; whatever still cannot be written when the logger closes goes to
    ``spool_path`` (JSON lines, see :func:`read_spool`), or :meth:`close` raises.

    ``durability="ack"``: :meth:`log` and :meth:`log_all` return only once their entries
    are committed to the store, and raise LogStoreError when that takes over
    ``ack_timeout_s`` or the queue is full, so a caller never acknowledges an unlogged
    decision. The writer then commits whatever is queued at once instead of waiting up to
    ``flush_interval_s`` for a batch to fill.
    """

    def __init__(
        self,
        store: LogStore,
        *,
        queue_size: int = 10_000,
        batch_size: int = 256,
        flush_interval_s: float = 0.2,
        spool_path: Path | str | None = None,
        store_text: bool = True,
        retry_initial_s: float = 0.05,
        retry_max_s: float = 5.0,
        close_attempts: int = 3,
        durability: Durability = "async",
        ack_timeout_s: float = 10.0,
    ):
        if queue_size < 1 or batch_size < 1:
            raise ValueError("queue_size and batch_size must be at least 1")
        if durability not in ("ack", "async"):
            raise ValueError(f"durability must be 'ack' or 'async', not {durability!r}")
        self.durability: Durability = durability
        self.ack_timeout_s = ack_timeout_s
        self.store = store
        self.store_text = store_text
        self._queue_size = queue_size
        self._batch_size = batch_size
        self._flush_interval_s = flush_interval_s
        self._spool_path = None if spool_path is None else Path(spool_path)
        self._retry_initial_s = retry_initial_s
        self._retry_max_s = retry_max_s
        self._close_attempts = max(1, close_attempts)
        # Other processes writing the same store (`serve --workers N`): a decision another
        # worker routed may sit in its queue for up to its flush interval, so a lookup
        # that misses waits this long for it before calling the id unknown.
        self.peer_grace_s = 0.0

        self._cond = threading.Condition()
        self._buffer: deque[Entry] = deque()
        self._accepted = 0
        self._finished = 0  # written, spooled or lost
        self._written = 0
        self._dropped = 0
        self._errors = 0
        self._spooled = 0
        self._lost = 0
        self._flush_waiters = 0
        self._closing = False
        self._closed = False
        self._stop = threading.Event()
        self._store_down = False
        self._failing = False
        self._spool_lock = threading.Lock()  # the writer and a timed-out close() may both spool
        self.last_error: BaseException | None = None

        self._thread = threading.Thread(
            target=self._run, name="modeltriage-decision-log", daemon=True
        )
        self._thread.start()
        # The writer is a daemon thread, so without this an exiting process would drop
        # whatever is still queued without a word.
        atexit.register(self._close_at_exit)

    # Counters.

    @property
    def written(self) -> int:
        """Entries the store accepted (an id logged twice counts twice)."""
        return self._written

    @property
    def dropped(self) -> int:
        """Entries refused by :meth:`submit` because the queue was full or closed."""
        return self._dropped

    @property
    def errors(self) -> int:
        """Failed write attempts (each retry that fails counts)."""
        return self._errors

    @property
    def spooled(self) -> int:
        return self._spooled

    @property
    def pending(self) -> int:
        """Entries accepted but not yet written, spooled or given up on."""
        with self._cond:
            return self._accepted - self._finished

    @property
    def closed(self) -> bool:
        return self._closed

    @property
    def loss_window_s(self) -> float:
        """How many seconds of acknowledged decisions a hard kill may lose: 0 with
        ``ack``, else the flush interval (plus the commit in progress)."""
        return 0.0 if self.durability == "ack" else self._flush_interval_s

    # Producer side.

    def submit(self, entry: Entry) -> bool:
        """Queue ``entry``; False (and counted in :attr:`dropped`) when the queue is full."""
        with self._cond:
            if self._closing or len(self._buffer) >= self._queue_size:
                self._dropped += 1
                return False
            self._buffer.append(entry)
            self._accepted += 1
            # Wake the writer only when it has something new to do.
            if len(self._buffer) in (1, self._batch_size):
                self._cond.notify_all()
            return True

    def log(self, decision: Decision, text: str, *, metadata: Metadata | None = None) -> bool:
        """Build the entry for ``decision`` (honouring ``store_text``) and submit it; with
        ``durability="ack"``, wait until it is committed (see :meth:`log_all`)."""
        return self.log_all([(decision, text, metadata)])

    def log_all(self, logged: Sequence[tuple[Decision, str, Metadata | None]]) -> bool:
        """Submit one entry per ``(decision, text, metadata)``; False when one was dropped.
        With ``durability="ack"``, return once all are committed (one shared wait), or
        raise LogStoreError."""
        entries = [
            LogEntry.from_decision(decision, text, store_text=self.store_text, metadata=metadata)
            for decision, text, metadata in logged
        ]
        return self.write_all(entries, "decision")

    def record(self, event: EventEntry) -> bool:
        """Log an event (a failover, an answer check) as decisions are logged: with
        ``durability="ack"``, return once it is committed, or raise LogStoreError."""
        return self.write_all([event], "event")

    def write_all(self, entries: Sequence[Entry], what: str = "entry") -> bool:
        """Submit ``entries``; with ``durability="async"``, False when one was dropped;
        with ``ack``, wait until all are committed (sharing the commit with concurrent
        callers), or raise LogStoreError naming ``what`` was not logged."""
        accepted = all([self.submit(entry) for entry in entries])
        if self.durability == "async":
            return accepted
        if not accepted:
            raise LogStoreError(
                f"the log queue is full ({self._queue_size} entries, log.queue_size): "
                f"the {what} was not logged",
                self.store.url,
            )
        with self._cond:
            target = self._accepted
        if not self._wait_finished(target, self.ack_timeout_s):
            raise LogStoreError(
                f"the {what} was not committed within {self.ack_timeout_s:g} s "
                f"(log.ack_timeout_s); last error: {self.last_error}",
                self.store.url,
            )
        return True

    def decision(self, decision_id: str, *, timeout: float | None = 5.0) -> LogEntry | None:
        """The logged decision, flushing the queue first if it may still be in it."""
        found = self.store.decision(decision_id)
        if found is None and self.flush(timeout):
            found = self.store.decision(decision_id)
        deadline = time.monotonic() + self.peer_grace_s
        while found is None and time.monotonic() < deadline:
            time.sleep(0.05)
            found = self.store.decision(decision_id)
        return found

    def flush(self, timeout: float | None = None) -> bool:
        """Wait until everything submitted so far is written; False on timeout."""
        with self._cond:
            target = self._accepted
        return self._wait_finished(target, timeout)

    def _wait_finished(self, target: int, timeout: float | None) -> bool:
        with self._cond:
            self._flush_waiters += 1
            self._cond.notify_all()
            try:
                return self._cond.wait_for(lambda: self._finished >= target, timeout)
            finally:
                self._flush_waiters -= 1

    def write_feedback(self, entry: FeedbackEntry, *, timeout: float | None = 5.0) -> None:
        """Write feedback, first flushing the queue if its decision may still be in it."""
        try:
            self.store.write_feedback(entry)
            return
        except UnknownDecisionError:
            # Feedback can arrive moments after routing, before the writer caught up.
            if not self.flush(timeout):
                raise
        deadline = time.monotonic() + self.peer_grace_s
        while True:
            try:
                self.store.write_feedback(entry)
                return
            except UnknownDecisionError:
                if time.monotonic() >= deadline:
                    raise
                time.sleep(0.05)

    def close(self, timeout: float | None = None) -> None:
        """Write everything queued, stop the writer and close the store. Idempotent.

        Raises LogStoreError when rows could be neither written nor spooled, or when the
        writer did not finish within ``timeout``.
        """
        with self._cond:
            if self._closing:
                return
            self._closing = True
            self._cond.notify_all()
        self._stop.set()
        atexit.unregister(self._close_at_exit)
        self._thread.join(timeout)
        if self._thread.is_alive():
            self._close_timed_out()
            return
        self._closed = True
        with contextlib.suppress(ModelTriageError):
            self.store.close()
        if self._lost:
            raise LogStoreError(
                f"{self._lost} logged decisions could not be written and are lost "
                f"(last error: {self.last_error}); set spool_path to keep them in a file",
                self.store.url,
            )

    def _close_timed_out(self) -> None:
        with self._cond:
            leftover = list(self._buffer)
            self._buffer.clear()
        in_flight = self.pending - len(leftover)
        kept = self._spool(leftover)
        self._finish(len(leftover))
        self._closed = True
        raise LogStoreError(
            f"the writer did not finish in time; {kept} queued decisions were spooled, "
            f"{len(leftover) - kept} lost, {in_flight} still being written",
            self.store.url,
        )

    def _close_at_exit(self) -> None:
        try:
            self.close(timeout=10.0)
        except ModelTriageError as exc:
            _log.error("%s", exc)

    def __enter__(self) -> DecisionLogger:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # Writer side.

    def _run(self) -> None:
        while True:
            batch = self._next_batch()
            if batch is None:
                return
            if self._store_down or not self._write_with_retry(batch):
                # Once close has given up on the store, the rest goes straight to spool.
                self._store_down = True
                self._spool(batch)
            self._finish(len(batch))

    def _next_batch(self) -> list[Entry] | None:
        with self._cond:
            while not self._buffer:
                if self._closing:
                    return None
                self._cond.wait()
            # Give a partial batch a moment to fill, unless someone is waiting on it.
            deadline = time.monotonic() + self._flush_interval_s
            while (
                len(self._buffer) < self._batch_size
                and not self._closing
                and not self._flush_waiters
            ):
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                self._cond.wait(remaining)
            size = min(self._batch_size, len(self._buffer))
            return [self._buffer.popleft() for _ in range(size)]

    def _write_with_retry(self, batch: list[Entry]) -> bool:
        delay = self._retry_initial_s
        attempts_while_closing = 0
        while True:
            try:
                write_entries(self.store, batch)
            except Exception as exc:
                self._count_error(exc, len(batch))
            else:
                if self._failing:
                    self._failing = False
                    _log.warning("decision log %s: writing again", self.store.url)
                self._written += len(batch)
                return True
            if self._stop.is_set():
                attempts_while_closing += 1
                if attempts_while_closing >= self._close_attempts:
                    return False
                time.sleep(self._retry_initial_s)
            else:
                # Wakes early when close() starts, so shutdown never waits out a backoff.
                self._stop.wait(delay)
                delay = min(delay * 2, self._retry_max_s)

    def _count_error(self, exc: Exception, rows: int) -> None:
        with self._cond:
            self._errors += 1
            self.last_error = exc
        # One warning per outage, not one per retry.
        if not self._failing:
            self._failing = True
            _log.warning(
                "decision log %s: cannot write %d decisions, will retry: %s",
                self.store.url,
                rows,
                exc,
            )

    def _spool(self, entries: list[Entry]) -> int:
        """Keep entries the store would not take; returns how many were kept."""
        if not entries:
            return 0
        with self._spool_lock:
            if self._spool_path is not None:
                try:
                    write_spool(self._spool_path, entries)
                except (OSError, ValueError) as exc:
                    _log.error("decision log: cannot spool to %s: %s", self._spool_path, exc)
                else:
                    _log.warning(
                        "decision log %s: %d decisions spooled to %s",
                        self.store.url,
                        len(entries),
                        self._spool_path,
                    )
                    self._spooled += len(entries)
                    return len(entries)
            self._lost += len(entries)
            return 0

    def _finish(self, count: int) -> None:
        with self._cond:
            self._finished += count
            self._cond.notify_all()
