"""The half of the SQL stores that SQLite and PostgreSQL share: every statement, the
migration runner, entry encoding and error wrapping. A dialect fills in the hooks
(:mod:`.sqlite`, :mod:`.postgres`).

SQL stores migrate their schema when they open. Each migration runs once, inside a
transaction, and is recorded in ``schema_version``; a database migrated by a newer
modeltriage is refused rather than written in a shape this code does not know.
"""

from __future__ import annotations

import contextlib
import json
import logging
import threading
from abc import ABC, abstractmethod
from collections.abc import Iterator, Sequence
from datetime import datetime
from typing import Any, Protocol

from modeltriage.errors import LogStoreError, UnknownDecisionError
from modeltriage.log.entries import (
    EventEntry,
    FeedbackEntry,
    LogEntry,
    Metadata,
    _as_utc,
    _utcnow,
    check_query,
    readable,
    repair_stored,
)
from modeltriage.log.migrations import Migration, check_migrations

_log = logging.getLogger(__name__)

ENTRY_COLUMNS = (
    "decision_id",
    "created_at",
    "text",
    "text_sha256",
    "intent",
    "runner_up",
    "difficulty",
    "tier",
    "model",
    "confidence",
    "margin",
    "cascaded",
    "reason",
    "estimated_cost_usd",
    "latency_ms",
    "index_version",
    "metadata",
    "input_tokens",
    "fallbacks",
    "cascade_to",
    "second_opinion",
)
FEEDBACK_COLUMNS = ("decision_id", "quality", "source", "model", "created_at")
EVENT_COLUMNS = ("kind", "model", "to_model", "detail", "decision_id", "created_at", "event_id")


class Cursor(Protocol):
    """What the SQL stores need from a sqlite3 or psycopg cursor."""

    @property
    def rowcount(self) -> int: ...

    def fetchall(self) -> list[Any]: ...


class SQLStore(ABC):
    """The dialect-neutral half of the SQL stores: statements, migration, error wrapping."""

    url: str
    _param: str
    """The placeholder for a parameter in a statement."""
    _db_errors: tuple[type[BaseException], ...]
    """What the driver raises; wrapped in LogStoreError."""
    _version_table: str
    """The statement creating ``schema_version`` when it does not exist yet."""
    _feedback_insert_sql: str
    """Inserts one feedback row, only when its decision is logged (the id comes twice)."""

    def __init__(self, url: str, migrations: Sequence[Migration]):
        check_migrations(migrations)
        self.url = url
        self._migrations = tuple(migrations)
        self._lock = threading.RLock()
        self._closed = False

    # Dialect hooks.

    @abstractmethod
    def _transaction(self, *, write: bool) -> contextlib.AbstractContextManager[None]: ...

    @abstractmethod
    def _execute(self, sql: str, params: Sequence[Any] = ()) -> Cursor: ...

    @abstractmethod
    def _executemany(self, sql: str, rows: Sequence[Sequence[Any]]) -> None: ...

    @abstractmethod
    def _lock_for_migration(self) -> None: ...

    @abstractmethod
    def _text(self, text: str) -> str:
        """``text`` as the database can hold it."""

    @abstractmethod
    def _encode_metadata(self, metadata: Metadata) -> str:
        """``metadata`` as JSON text the database can hold."""

    @abstractmethod
    def _decode_json(self, value: Any) -> Any:
        """A JSON column's value as Python data."""

    @abstractmethod
    def _encode_time(self, value: datetime) -> Any: ...

    @abstractmethod
    def _decode_time(self, value: Any) -> datetime: ...

    @abstractmethod
    def _close_connection(self) -> None: ...

    # Shared behaviour.

    @contextlib.contextmanager
    def _guard(self, action: str, *, write: bool = False) -> Iterator[None]:
        """Serialise use of the connection, run one transaction, and explain failures."""
        with self._lock:
            if self._closed:
                raise LogStoreError("the store is closed", self.url)
            try:
                with self._transaction(write=write):
                    yield
            except self._db_errors as exc:
                raise LogStoreError(f"cannot {action}: {exc}", self.url) from exc

    def _migrate(self) -> None:
        known = len(self._migrations)
        with self._guard("create or migrate the schema", write=True):
            # Lock first: two processes creating schema_version at once would collide.
            self._lock_for_migration()
            self._execute(self._version_table)
            current = self._current_version()
            if current > known:
                raise LogStoreError(
                    f"the database schema is version {current} but this modeltriage only "
                    f"knows versions up to {known}; upgrade modeltriage or use another "
                    "database",
                    self.url,
                )
            for migration in self._migrations[current:]:
                for statement in migration.statements:
                    self._execute(statement)
                self._execute(
                    "INSERT INTO schema_version (version, description, applied_at) "
                    f"VALUES ({self._param}, {self._param}, {self._param})",
                    (migration.version, migration.description, self._encode_time(_utcnow())),
                )
                _log.info("decision log %s: migrated to schema %d", self.url, migration.version)

    def _current_version(self) -> int:
        rows = self._execute("SELECT MAX(version) FROM schema_version").fetchall()
        return int(rows[0][0] or 0)

    def schema_version(self) -> int:
        with self._guard("read the schema version"):
            return self._current_version()

    def _insert_new(
        self, table: str, columns: Sequence[str], key: str, rows: Sequence[Sequence[Any]]
    ) -> None:
        """Insert ``rows`` in one transaction, skipping any whose ``key`` is stored already."""
        marks = ", ".join([self._param] * len(columns))
        sql = (
            f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({marks}) "
            f"ON CONFLICT ({key}) DO NOTHING"
        )
        with self._guard(f"write {len(rows)} {table}", write=True):
            self._executemany(sql, rows)

    def _select(
        self,
        action: str,
        table: str,
        columns: Sequence[str],
        where: Sequence[tuple[str, Any]] = (),
        *,
        order: str = "",
        limit: int | None = None,
    ) -> list[Any]:
        """Rows of ``columns`` from ``table`` that pass every ``where`` test, a column and
        an operator (``"created_at >="``) with the value to compare to."""
        sql = f"SELECT {', '.join(columns)} FROM {table}"
        params = [value for _, value in where]
        if where:
            sql += " WHERE " + " AND ".join(f"{test} {self._param}" for test, _ in where)
        if order:
            sql += f" ORDER BY {order}"
        if limit is not None:
            sql += f" LIMIT {self._param}"
            params.append(limit)
        with self._guard(action):
            return self._execute(sql, params).fetchall()

    def write_decisions(self, entries: Sequence[LogEntry]) -> None:
        if entries:
            rows = [self._encode_entry(entry) for entry in entries]
            self._insert_new("decisions", ENTRY_COLUMNS, "decision_id", rows)

    def write_feedback(self, entry: FeedbackEntry) -> None:
        params = (
            entry.decision_id,
            entry.quality,
            entry.source,
            entry.model,
            self._encode_time(entry.created_at),
            entry.decision_id,
        )
        with self._guard("write feedback", write=True):
            if self._execute(self._feedback_insert_sql, params).rowcount == 0:
                raise UnknownDecisionError(entry.decision_id)

    def decisions(
        self, *, limit: int | None = None, since: datetime | None = None
    ) -> list[LogEntry]:
        since = check_query(limit, since)
        where = [] if since is None else [("created_at >=", self._encode_time(since))]
        rows = self._select(
            "read decisions",
            "decisions",
            ENTRY_COLUMNS,
            where,
            order="created_at DESC, seq DESC",
            limit=limit,
        )
        return [self._decode_entry(row) for row in rows]

    def decision(self, decision_id: str) -> LogEntry | None:
        where = [("decision_id =", decision_id)]
        rows = self._select("read a decision", "decisions", ENTRY_COLUMNS, where)
        return self._decode_entry(rows[0]) if rows else None

    def write_events(self, entries: Sequence[EventEntry]) -> None:
        if not entries:
            return
        rows = [
            (
                e.kind,
                self._text(e.model),
                None if e.to_model is None else self._text(e.to_model),
                self._text(e.detail),
                e.decision_id,
                self._encode_time(e.created_at),
                e.event_id,
            )
            for e in entries
        ]
        self._insert_new("events", EVENT_COLUMNS, "event_id", rows)

    def events(
        self, *, decision_id: str | None = None, since: datetime | None = None
    ) -> list[EventEntry]:
        since = check_query(None, since)
        where: list[tuple[str, Any]] = []
        if decision_id is not None:
            where.append(("decision_id =", decision_id))
        if since is not None:
            where.append(("created_at >=", self._encode_time(since)))
        rows = self._select("read events", "events", EVENT_COLUMNS, where, order="created_at, seq")
        return [
            EventEntry(
                kind=row[0],
                model=readable(row[1]),
                to_model=None if row[2] is None else readable(row[2]),
                detail=readable(row[3]),
                decision_id=None if row[4] is None else readable(row[4]),
                created_at=self._decode_time(row[5]),
                event_id=row[6],
            )
            for row in rows
        ]

    def mark_unhealthy(self, model: str, until: datetime) -> None:
        until = _as_utc(until, "until")
        p = self._param
        sql = (
            f"INSERT INTO model_health (model, until, marked_at) VALUES ({p}, {p}, {p}) "
            "ON CONFLICT (model) DO UPDATE SET until = excluded.until, "
            "marked_at = excluded.marked_at"
        )
        now = self._encode_time(_utcnow())
        params = (self._text(model), self._encode_time(until), now)
        with self._guard("mark a model unhealthy", write=True):
            self._execute(sql, params)
            # Expired marks go as new ones come: the table never outgrows the models.
            self._execute(f"DELETE FROM model_health WHERE until <= {p}", (now,))

    def clear_unhealthy(self, model: str) -> bool:
        sql = f"DELETE FROM model_health WHERE model = {self._param}"
        with self._guard("clear a model's health mark", write=True):
            return bool(self._execute(sql, (self._text(model),)).rowcount)

    def check_writable(self) -> None:
        sql = f"DELETE FROM model_health WHERE until <= {self._param}"
        with self._guard("write to the log", write=True):
            self._execute(sql, (self._encode_time(_utcnow()),))

    def unhealthy_until(self, now: datetime) -> dict[str, datetime]:
        now = _as_utc(now, "now")
        where = [("until >", self._encode_time(now))]
        rows = self._select(
            "read model health", "model_health", ("model", "until"), where, order="model"
        )
        return {row[0]: self._decode_time(row[1]) for row in rows}

    def feedback(self, decision_id: str | None = None) -> list[FeedbackEntry]:
        where = [] if decision_id is None else [("decision_id =", decision_id)]
        rows = self._select(
            "read feedback", "feedback", FEEDBACK_COLUMNS, where, order="created_at, seq"
        )
        return [self._feedback_entry(row) for row in rows]

    def _feedback_entry(self, row: Sequence[Any]) -> FeedbackEntry:
        return FeedbackEntry(
            decision_id=readable(row[0]),
            quality=row[1],
            source=readable(row[2]),
            model=None if row[3] is None else readable(row[3]),
            created_at=self._decode_time(row[4]),
        )

    def feedback_of(self, decision_ids: Sequence[str]) -> list[FeedbackEntry]:
        """The feedback on ``decision_ids`` (a few hundred at a time), oldest first."""
        if not decision_ids:
            return []
        marks = ", ".join([self._param] * len(decision_ids))
        sql = (
            f"SELECT {', '.join(FEEDBACK_COLUMNS)} FROM feedback "
            f"WHERE decision_id IN ({marks}) ORDER BY created_at, seq"
        )
        with self._guard("read feedback"):
            rows = self._execute(sql, list(decision_ids)).fetchall()
        return [self._feedback_entry(row) for row in rows]

    def decode_entry(self, row: Sequence[Any]) -> LogEntry:
        """A row of ENTRY_COLUMNS read through :meth:`query`, as an entry."""
        return self._decode_entry(row)

    def query(self, sql: str, params: Sequence[Any] = ()) -> list[Any]:
        """Rows of a read-only statement written with ``?`` placeholders: reports
        aggregate in the database through it rather than reading every row."""
        with self._guard("run a report query"):
            return self._execute(sql.replace("?", self._param), params).fetchall()

    def encode_time(self, value: datetime) -> Any:
        """``value`` as this database compares times (for :meth:`query`)."""
        return self._encode_time(_as_utc(value, "since"))

    def decode_time(self, value: Any) -> datetime:
        return self._decode_time(value)

    def _encode_entry(self, entry: LogEntry) -> tuple[Any, ...]:
        """``entry`` as a row of ENTRY_COLUMNS."""
        return (
            entry.decision_id,
            self._encode_time(entry.created_at),
            None if entry.text is None else self._text(entry.text),
            entry.text_sha256,
            entry.intent,
            entry.runner_up,
            entry.difficulty,
            entry.tier,
            entry.model,
            entry.confidence,
            entry.margin,
            entry.cascaded,  # sqlite3 binds a bool as the integer 0 or 1
            entry.reason,
            entry.estimated_cost_usd,
            entry.latency_ms,
            entry.index_version,
            self._encode_metadata(entry.metadata),
            entry.input_tokens,
            json.dumps(list(entry.fallbacks)),
            entry.cascade_to,
            entry.second_opinion,
        )

    def _decode_entry(self, row: Sequence[Any]) -> LogEntry:
        values = dict(zip(ENTRY_COLUMNS, row, strict=True))
        values["created_at"] = self._decode_time(values["created_at"])
        values["cascaded"] = bool(values["cascaded"])
        values["metadata"] = self._tolerant_json(values["metadata"])
        values["fallbacks"] = self._tolerant_json(values["fallbacks"])
        return LogEntry(**repair_stored(values))

    def _tolerant_json(self, value: Any) -> Any:
        # Not JSON: repair_stored empties the column and flags the entry.
        try:
            return self._decode_json(value)
        except (ValueError, TypeError):
            return _NOT_JSON

    def close(self) -> None:
        with self._lock:
            if self._closed:
                return
            self._closed = True
            with contextlib.suppress(*self._db_errors):
                self._close_connection()

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.url!r})"


_NOT_JSON = object()


def storable(text: str) -> str:
    """``text`` with lone surrogates replaced: neither database can store them."""
    return text.encode("utf-8", "replace").decode("utf-8")
