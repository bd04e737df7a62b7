"""Where the decision log lives: the :class:`LogStore` contract, an in-memory fake, and
SQLite / PostgreSQL stores with versioned migrations.

SQL stores migrate their schema when they open. Each migration runs once, inside a
transaction, and is recorded in ``schema_version``; a database migrated by a newer
modeltriage is refused rather than written in a shape this code does not know.
"""

from __future__ import annotations

import contextlib
import json
import logging
import sqlite3
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol
from urllib.parse import parse_qsl, quote, urlencode, urlsplit, urlunsplit

from modeltriage.errors import MissingDependencyError

if TYPE_CHECKING:
    import psycopg


from modeltriage.log.entries import (
    Entry,
    EventEntry,
    FeedbackEntry,
    InvalidEntryError,
    LogEntry,
    LogStoreError,
    Metadata,
    UnknownDecisionError,
    _as_utc,
    _utcnow,
)

_log = logging.getLogger(__name__)

MEMORY_URL = "memory:"
_MASK = "***"

# --------------------------------------------------------------------------- URLs


def mask_url(url: str) -> str:
    """``url`` with any password replaced by ``***``, fit for messages and logs."""
    if "://" not in url:
        return url
    parts = urlsplit(url)
    netloc = parts.netloc
    userinfo, at, hosts = netloc.rpartition("@")
    if at and ":" in userinfo:
        netloc = f"{userinfo.partition(':')[0]}:{_MASK}@{hosts}"
    query = parts.query
    if "password" in query.lower():
        pairs = parse_qsl(query, keep_blank_values=True)
        masked = [(k, _MASK if k.lower() == "password" else v) for k, v in pairs]
        query = urlencode(masked, safe="*", quote_via=quote)
    if (netloc, query) == (parts.netloc, parts.query):
        return url  # urlunsplit would turn "sqlite:///x" into "sqlite:/x"
    return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))


def _is_postgres(url: str) -> bool:
    return url.startswith(("postgresql://", "postgres://"))


def sqlite_path(url: str) -> Path | None:
    """The file a SQLite URL or plain path names, or None when ``url`` is not SQLite."""
    if url == MEMORY_URL or _is_postgres(url):
        return None
    if url.startswith("sqlite:"):
        rest = url.removeprefix("sqlite:")
        # "sqlite:///abs.db" names /abs.db and "sqlite://rel.db" names rel.db.
        rest = rest.removeprefix("//")
        return Path(rest).expanduser() if rest else None
    scheme = url.partition(":")[0]
    # A one-letter "scheme" is a Windows drive, not a database kind.
    if "://" in url and len(scheme) > 1:
        return None
    return Path(url).expanduser() if url else None


def resolve_url(url: str, base_dir: Path | str) -> str:
    """``url`` with a relative SQLite path made relative to ``base_dir`` (e.g. the intents)."""
    path = sqlite_path(url)
    if path is None or path.is_absolute():
        return url
    return str(Path(base_dir) / path)


def open_store(url: str) -> LogStore:
    """Open (creating and migrating as needed) the store ``url`` names.

    ``sqlite:///abs/path.db``, ``sqlite:relative.db`` or a plain path: SQLite.
    ``postgresql://...`` or ``postgres://...``: PostgreSQL (needs ``modeltriage[postgres]``).
    ``memory:``: a fresh in-memory store, gone when the process ends.
    """
    url = url.strip()
    if url == MEMORY_URL:
        return MemoryStore()
    if _is_postgres(url):
        return PostgresStore(url)
    path = sqlite_path(url)
    if path is None:
        raise LogStoreError(
            "unsupported log URL; use a file path, sqlite:///path.db, postgresql://... or memory:",
            mask_url(url),
        )
    return SQLiteStore(path)


# --------------------------------------------------------------------------- contract


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

    def schema_version(self) -> int: ...

    def close(self) -> None: ...


def _check_query(limit: int | None, since: datetime | None) -> datetime | None:
    if limit is not None and limit < 0:
        raise InvalidEntryError(f"limit must not be negative, got {limit}")
    return None if since is None else _as_utc(since, "since")


class MemoryStore:
    """The deterministic in-memory store: same contract, no I/O. For tests."""

    def __init__(self) -> None:
        self.url = MEMORY_URL
        self._lock = threading.Lock()
        self._decisions: dict[str, LogEntry] = {}
        self._feedback: list[FeedbackEntry] = []
        self._events: list[EventEntry] = []
        self._health: dict[str, datetime] = {}
        self._closed = False

    def _check_open(self) -> None:
        if self._closed:
            raise LogStoreError("the store is closed", self.url)

    def write_decisions(self, entries: Sequence[LogEntry]) -> None:
        with self._lock:
            self._check_open()
            for entry in entries:
                self._decisions.setdefault(entry.decision_id, entry)

    def write_feedback(self, entry: FeedbackEntry) -> None:
        with self._lock:
            self._check_open()
            if entry.decision_id not in self._decisions:
                raise UnknownDecisionError(entry.decision_id)
            self._feedback.append(entry)

    def decisions(
        self, *, limit: int | None = None, since: datetime | None = None
    ) -> list[LogEntry]:
        since = _check_query(limit, since)
        with self._lock:
            self._check_open()
            # Dicts keep insertion order, so reversing it breaks created_at ties newest
            # first, as the SQL stores do with their sequence column.
            entries = list(reversed(self._decisions.values()))
        entries.sort(key=lambda e: e.created_at, reverse=True)
        if since is not None:
            entries = [e for e in entries if e.created_at >= since]
        return entries if limit is None else entries[:limit]

    def feedback(self, decision_id: str | None = None) -> list[FeedbackEntry]:
        with self._lock:
            self._check_open()
            rows = [f for f in self._feedback if decision_id in (None, f.decision_id)]
        return sorted(rows, key=lambda f: f.created_at)

    def decision(self, decision_id: str) -> LogEntry | None:
        with self._lock:
            self._check_open()
            return self._decisions.get(decision_id)

    def write_events(self, entries: Sequence[EventEntry]) -> None:
        with self._lock:
            self._check_open()
            known = {e.event_id for e in self._events}
            for entry in entries:
                if entry.event_id not in known:
                    known.add(entry.event_id)
                    self._events.append(entry)

    def events(
        self, *, decision_id: str | None = None, since: datetime | None = None
    ) -> list[EventEntry]:
        since = _check_query(None, since)
        with self._lock:
            self._check_open()
            rows = [e for e in self._events if decision_id in (None, e.decision_id)]
        if since is not None:
            rows = [e for e in rows if e.created_at >= since]
        return sorted(rows, key=lambda e: e.created_at)

    def mark_unhealthy(self, model: str, until: datetime) -> None:
        until = _as_utc(until, "until")
        with self._lock:
            self._check_open()
            self._health[model] = until

    def unhealthy_until(self, now: datetime) -> dict[str, datetime]:
        now = _as_utc(now, "now")
        with self._lock:
            self._check_open()
            return {m: t for m, t in sorted(self._health.items()) if t > now}

    def schema_version(self) -> int:
        return len(SQLITE_MIGRATIONS)

    def close(self) -> None:
        self._closed = True


# --------------------------------------------------------------------------- schema


@dataclass(frozen=True)
class Migration:
    version: int
    description: str
    statements: tuple[str, ...]


_ENTRY_COLUMNS = (
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
_FEEDBACK_COLUMNS = ("decision_id", "quality", "source", "model", "created_at")
_EVENT_COLUMNS = ("kind", "model", "to_model", "detail", "decision_id", "created_at", "event_id")

SQLITE_MIGRATIONS: tuple[Migration, ...] = (
    Migration(
        1,
        "decisions table",
        (
            """CREATE TABLE decisions (
                seq INTEGER PRIMARY KEY,
                decision_id TEXT NOT NULL UNIQUE,
                created_at TEXT NOT NULL,
                text TEXT,
                text_sha256 TEXT NOT NULL,
                intent TEXT,
                runner_up TEXT,
                difficulty TEXT,
                tier TEXT NOT NULL,
                model TEXT NOT NULL,
                confidence REAL NOT NULL,
                margin REAL,
                cascaded INTEGER NOT NULL CHECK (cascaded IN (0, 1)),
                reason TEXT NOT NULL,
                estimated_cost_usd REAL NOT NULL,
                latency_ms REAL NOT NULL,
                index_version TEXT NOT NULL
            )""",
        ),
    ),
    Migration(
        2,
        "feedback table, metadata column, time indexes",
        (
            "ALTER TABLE decisions ADD COLUMN metadata TEXT NOT NULL DEFAULT '{}'",
            "CREATE INDEX decisions_created_at ON decisions (created_at)",
            """CREATE TABLE feedback (
                seq INTEGER PRIMARY KEY,
                decision_id TEXT NOT NULL REFERENCES decisions (decision_id),
                quality REAL NOT NULL CHECK (quality >= 0 AND quality <= 1),
                source TEXT NOT NULL,
                model TEXT,
                created_at TEXT NOT NULL
            )""",
            "CREATE INDEX feedback_decision_id ON feedback (decision_id)",
            "CREATE INDEX feedback_created_at ON feedback (created_at)",
        ),
    ),
    Migration(
        3,
        "input token estimate, so spend can be compared with all-flagship",
        ("ALTER TABLE decisions ADD COLUMN input_tokens INTEGER",),
    ),
    Migration(
        4,
        "fallback chain and cascade plan per decision; failover and escalation events",
        (
            "ALTER TABLE decisions ADD COLUMN fallbacks TEXT NOT NULL DEFAULT '[]'",
            "ALTER TABLE decisions ADD COLUMN cascade_to TEXT",
            "ALTER TABLE decisions ADD COLUMN second_opinion TEXT",
            # No foreign key: an event about a chain the caller sent has no decision.
            """CREATE TABLE events (
                seq INTEGER PRIMARY KEY,
                event_id TEXT NOT NULL UNIQUE,
                kind TEXT NOT NULL CHECK (kind IN ('failover', 'escalation')),
                model TEXT NOT NULL,
                to_model TEXT,
                detail TEXT NOT NULL,
                decision_id TEXT,
                created_at TEXT NOT NULL
            )""",
            "CREATE INDEX events_decision_id ON events (decision_id)",
            "CREATE INDEX events_created_at ON events (created_at)",
            # Models marked unhealthy, shared by every replica writing to this log.
            """CREATE TABLE model_health (
                model TEXT PRIMARY KEY,
                until TEXT NOT NULL,
                marked_at TEXT NOT NULL
            )""",
        ),
    ),
)

POSTGRES_MIGRATIONS: tuple[Migration, ...] = (
    Migration(
        1,
        "decisions table",
        (
            """CREATE TABLE decisions (
                seq BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
                decision_id TEXT NOT NULL UNIQUE,
                created_at TIMESTAMPTZ NOT NULL,
                text TEXT,
                text_sha256 TEXT NOT NULL,
                intent TEXT,
                runner_up TEXT,
                difficulty TEXT,
                tier TEXT NOT NULL,
                model TEXT NOT NULL,
                confidence DOUBLE PRECISION NOT NULL,
                margin DOUBLE PRECISION,
                cascaded BOOLEAN NOT NULL,
                reason TEXT NOT NULL,
                estimated_cost_usd DOUBLE PRECISION NOT NULL,
                latency_ms DOUBLE PRECISION NOT NULL,
                index_version TEXT NOT NULL
            )""",
        ),
    ),
    Migration(
        2,
        "feedback table, metadata column, time indexes",
        (
            "ALTER TABLE decisions ADD COLUMN metadata JSONB NOT NULL DEFAULT '{}'::jsonb",
            "CREATE INDEX decisions_created_at ON decisions (created_at)",
            """CREATE TABLE feedback (
                seq BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
                decision_id TEXT NOT NULL REFERENCES decisions (decision_id),
                quality DOUBLE PRECISION NOT NULL CHECK (quality >= 0 AND quality <= 1),
                source TEXT NOT NULL,
                model TEXT,
                created_at TIMESTAMPTZ NOT NULL
            )""",
            "CREATE INDEX feedback_decision_id ON feedback (decision_id)",
            "CREATE INDEX feedback_created_at ON feedback (created_at)",
        ),
    ),
    Migration(
        3,
        "input token estimate, so spend can be compared with all-flagship",
        ("ALTER TABLE decisions ADD COLUMN input_tokens INTEGER",),
    ),
    Migration(
        4,
        "fallback chain and cascade plan per decision; failover and escalation events",
        (
            "ALTER TABLE decisions ADD COLUMN fallbacks JSONB NOT NULL DEFAULT '[]'::jsonb",
            "ALTER TABLE decisions ADD COLUMN cascade_to TEXT",
            "ALTER TABLE decisions ADD COLUMN second_opinion TEXT",
            """CREATE TABLE events (
                seq BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
                event_id TEXT NOT NULL UNIQUE,
                kind TEXT NOT NULL CHECK (kind IN ('failover', 'escalation')),
                model TEXT NOT NULL,
                to_model TEXT,
                detail TEXT NOT NULL,
                decision_id TEXT,
                created_at TIMESTAMPTZ NOT NULL
            )""",
            "CREATE INDEX events_decision_id ON events (decision_id)",
            "CREATE INDEX events_created_at ON events (created_at)",
            """CREATE TABLE model_health (
                model TEXT PRIMARY KEY,
                until TIMESTAMPTZ NOT NULL,
                marked_at TIMESTAMPTZ NOT NULL
            )""",
        ),
    ),
)


def _check_migrations(migrations: Sequence[Migration]) -> None:
    versions = [m.version for m in migrations]
    if versions != list(range(1, len(migrations) + 1)):
        raise ValueError(f"migrations must be numbered 1, 2, ... in order, got {versions}")


class _Cursor(Protocol):
    """What the SQL stores need from a sqlite3 or psycopg cursor."""

    @property
    def rowcount(self) -> int: ...

    def fetchall(self) -> list[Any]: ...


# --------------------------------------------------------------------------- SQL stores


class _SQLStore(ABC):
    """The dialect-neutral half of the SQL stores: statements, migration, error wrapping."""

    url: str
    _param: str
    _db_errors: tuple[type[BaseException], ...]

    def __init__(self, url: str, migrations: Sequence[Migration]):
        _check_migrations(migrations)
        self.url = url
        self._migrations = tuple(migrations)
        self._lock = threading.RLock()
        self._closed = False

    # Dialect hooks.

    @abstractmethod
    def _transaction(self, *, write: bool) -> contextlib.AbstractContextManager[None]: ...

    @abstractmethod
    def _execute(self, sql: str, params: Sequence[Any] = ()) -> _Cursor: ...

    @abstractmethod
    def _executemany(self, sql: str, rows: Sequence[Sequence[Any]]) -> None: ...

    @abstractmethod
    def _bootstrap_sql(self) -> str: ...

    @abstractmethod
    def _lock_for_migration(self) -> None: ...

    @abstractmethod
    def _encode_entry(self, entry: LogEntry) -> tuple[Any, ...]: ...

    @abstractmethod
    def _text(self, text: str) -> str:
        """``text`` as the database can hold it."""

    @abstractmethod
    def _decode_entry(self, row: Sequence[Any]) -> LogEntry: ...

    @abstractmethod
    def _encode_time(self, value: datetime) -> Any: ...

    @abstractmethod
    def _decode_time(self, value: Any) -> datetime: ...

    @abstractmethod
    def _feedback_insert_sql(self) -> str: ...

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
            self._execute(self._bootstrap_sql())
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

    def write_decisions(self, entries: Sequence[LogEntry]) -> None:
        if not entries:
            return
        columns = ", ".join(_ENTRY_COLUMNS)
        marks = ", ".join([self._param] * len(_ENTRY_COLUMNS))
        sql = (
            f"INSERT INTO decisions ({columns}) VALUES ({marks}) "
            "ON CONFLICT (decision_id) DO NOTHING"
        )
        rows = [self._encode_entry(entry) for entry in entries]
        with self._guard(f"write {len(rows)} decisions", write=True):
            self._executemany(sql, rows)

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
            if self._execute(self._feedback_insert_sql(), params).rowcount == 0:
                raise UnknownDecisionError(entry.decision_id)

    def decisions(
        self, *, limit: int | None = None, since: datetime | None = None
    ) -> list[LogEntry]:
        since = _check_query(limit, since)
        sql = f"SELECT {', '.join(_ENTRY_COLUMNS)} FROM decisions"
        params: list[Any] = []
        if since is not None:
            sql += f" WHERE created_at >= {self._param}"
            params.append(self._encode_time(since))
        sql += " ORDER BY created_at DESC, seq DESC"
        if limit is not None:
            sql += f" LIMIT {self._param}"
            params.append(limit)
        with self._guard("read decisions"):
            rows = self._execute(sql, params).fetchall()
        return [self._decode_entry(row) for row in rows]

    def decision(self, decision_id: str) -> LogEntry | None:
        sql = f"SELECT {', '.join(_ENTRY_COLUMNS)} FROM decisions WHERE decision_id = {self._param}"
        with self._guard("read a decision"):
            rows = self._execute(sql, (decision_id,)).fetchall()
        return self._decode_entry(rows[0]) if rows else None

    def write_events(self, entries: Sequence[EventEntry]) -> None:
        if not entries:
            return
        marks = ", ".join([self._param] * len(_EVENT_COLUMNS))
        sql = (
            f"INSERT INTO events ({', '.join(_EVENT_COLUMNS)}) VALUES ({marks}) "
            "ON CONFLICT (event_id) DO NOTHING"
        )
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
        with self._guard(f"write {len(rows)} events", write=True):
            self._executemany(sql, rows)

    def events(
        self, *, decision_id: str | None = None, since: datetime | None = None
    ) -> list[EventEntry]:
        since = _check_query(None, since)
        sql = f"SELECT {', '.join(_EVENT_COLUMNS)} FROM events"
        where: list[str] = []
        params: list[Any] = []
        if decision_id is not None:
            where.append(f"decision_id = {self._param}")
            params.append(decision_id)
        if since is not None:
            where.append(f"created_at >= {self._param}")
            params.append(self._encode_time(since))
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " ORDER BY created_at, seq"
        with self._guard("read events"):
            rows = self._execute(sql, params).fetchall()
        return [
            EventEntry(
                kind=row[0],
                model=row[1],
                to_model=row[2],
                detail=row[3],
                decision_id=row[4],
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
        params = (self._text(model), self._encode_time(until), self._encode_time(_utcnow()))
        with self._guard("mark a model unhealthy", write=True):
            self._execute(sql, params)

    def unhealthy_until(self, now: datetime) -> dict[str, datetime]:
        now = _as_utc(now, "now")
        sql = f"SELECT model, until FROM model_health WHERE until > {self._param} ORDER BY model"
        with self._guard("read model health"):
            rows = self._execute(sql, (self._encode_time(now),)).fetchall()
        return {row[0]: self._decode_time(row[1]) for row in rows}

    def feedback(self, decision_id: str | None = None) -> list[FeedbackEntry]:
        sql = f"SELECT {', '.join(_FEEDBACK_COLUMNS)} FROM feedback"
        params: list[Any] = []
        if decision_id is not None:
            sql += f" WHERE decision_id = {self._param}"
            params.append(decision_id)
        sql += " ORDER BY created_at, seq"
        with self._guard("read feedback"):
            rows = self._execute(sql, params).fetchall()
        return [
            FeedbackEntry(
                decision_id=row[0],
                quality=row[1],
                source=row[2],
                model=row[3],
                created_at=self._decode_time(row[4]),
            )
            for row in rows
        ]

    def close(self) -> None:
        with self._lock:
            if self._closed:
                return
            self._closed = True
            with contextlib.suppress(*self._db_errors):
                self._close_connection()

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.url!r})"


def _storable(text: str) -> str:
    """``text`` with lone surrogates replaced: neither database can store them."""
    return text.encode("utf-8", "replace").decode("utf-8")


class SQLiteStore(_SQLStore):
    """A SQLite file in WAL mode, so readers never wait for the writer thread."""

    _param = "?"
    _db_errors = (sqlite3.Error,)

    def __init__(
        self,
        path: Path | str,
        *,
        busy_timeout_s: float = 10.0,
        migrations: Sequence[Migration] = SQLITE_MIGRATIONS,
    ):
        self.path = Path(path).expanduser()
        super().__init__(
            f"sqlite://{self.path}" if self.path.is_absolute() else f"sqlite:{self.path}",
            migrations,
        )
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            # One connection guarded by a lock: the writer thread and readers take turns.
            # isolation_level=None because transactions are begun explicitly below.
            self._conn = sqlite3.connect(
                self.path, timeout=busy_timeout_s, isolation_level=None, check_same_thread=False
            )
        except (OSError, sqlite3.Error) as exc:
            raise LogStoreError(f"cannot open the database: {exc}", self.url) from exc
        try:
            self._configure(busy_timeout_s)
            self._migrate()
        except BaseException:
            self._conn.close()
            raise

    def _configure(self, busy_timeout_s: float) -> None:
        try:
            self._conn.execute(f"PRAGMA busy_timeout = {int(busy_timeout_s * 1000)}")
            self._enable_wal(busy_timeout_s)
            # In WAL mode NORMAL cannot corrupt the file; a power cut may lose the last
            # commits, an acceptable trade for a log written many times a second.
            self._conn.execute("PRAGMA synchronous = NORMAL")
            self._conn.execute("PRAGMA foreign_keys = ON")
        except sqlite3.Error as exc:
            raise LogStoreError(f"cannot open the database: {exc}", self.url) from exc

    def _enable_wal(self, busy_timeout_s: float) -> None:
        # Switching to WAL fails at once, without the busy handler, while another
        # connection is inside a transaction, e.g. a second process migrating a new file.
        deadline = time.monotonic() + busy_timeout_s
        while True:
            try:
                self._conn.execute("PRAGMA journal_mode = WAL")
                return
            except sqlite3.OperationalError as exc:
                if "locked" not in str(exc) or time.monotonic() > deadline:
                    raise
                time.sleep(0.01)

    @contextlib.contextmanager
    def _transaction(self, *, write: bool) -> Iterator[None]:
        # IMMEDIATE takes the write lock up front, so two writers queue on the busy
        # timeout instead of one failing when it upgrades a read lock.
        self._conn.execute("BEGIN IMMEDIATE" if write else "BEGIN")
        try:
            yield
        except BaseException:
            # Some errors (disk full, I/O) already rolled the transaction back.
            if self._conn.in_transaction:
                self._conn.execute("ROLLBACK")
            raise
        self._conn.execute("COMMIT")

    def _execute(self, sql: str, params: Sequence[Any] = ()) -> _Cursor:
        return self._conn.execute(sql, params)

    def _executemany(self, sql: str, rows: Sequence[Sequence[Any]]) -> None:
        self._conn.executemany(sql, rows)

    def _bootstrap_sql(self) -> str:
        return (
            "CREATE TABLE IF NOT EXISTS schema_version (version INTEGER PRIMARY KEY, "
            "description TEXT NOT NULL, applied_at TEXT NOT NULL)"
        )

    def _lock_for_migration(self) -> None:
        """BEGIN IMMEDIATE already holds the database's write lock."""

    def _encode_time(self, value: datetime) -> str:
        # Fixed-width UTC ISO text sorts in time order, so SQL can compare it directly.
        return value.astimezone(timezone.utc).isoformat(timespec="microseconds")

    def _decode_time(self, value: Any) -> datetime:
        return datetime.fromisoformat(value)

    def _encode_entry(self, entry: LogEntry) -> tuple[Any, ...]:
        return (
            entry.decision_id,
            self._encode_time(entry.created_at),
            None if entry.text is None else _storable(entry.text),
            entry.text_sha256,
            entry.intent,
            entry.runner_up,
            entry.difficulty,
            entry.tier,
            entry.model,
            entry.confidence,
            entry.margin,
            int(entry.cascaded),
            entry.reason,
            entry.estimated_cost_usd,
            entry.latency_ms,
            entry.index_version,
            # ASCII escapes keep lone surrogates intact through the database.
            json.dumps(dict(entry.metadata)),
            entry.input_tokens,
            json.dumps(list(entry.fallbacks)),
            entry.cascade_to,
            entry.second_opinion,
        )

    def _text(self, text: str) -> str:
        return _storable(text)

    def _decode_entry(self, row: Sequence[Any]) -> LogEntry:
        values = dict(zip(_ENTRY_COLUMNS, row, strict=True))
        values["created_at"] = self._decode_time(values["created_at"])
        values["cascaded"] = bool(values["cascaded"])
        values["metadata"] = json.loads(values["metadata"])
        values["fallbacks"] = tuple(json.loads(values["fallbacks"]))
        return LogEntry(**values)

    def _feedback_insert_sql(self) -> str:
        return (
            "INSERT INTO feedback (decision_id, quality, source, model, created_at) "
            "SELECT ?, ?, ?, ?, ? WHERE EXISTS (SELECT 1 FROM decisions WHERE decision_id = ?)"
        )

    def _close_connection(self) -> None:
        self._conn.close()


# A fixed key for pg_advisory_xact_lock: "mtlog" in ASCII.
_PG_MIGRATION_LOCK = 0x6D746C6F67


def _pg_text(text: str) -> str:
    # PostgreSQL text and jsonb cannot hold NUL; U+FFFD keeps the rest of the row.
    return _storable(text).replace("\x00", "\ufffd")


def _pg_metadata(metadata: Metadata) -> str:
    cleaned = {_pg_text(k): _pg_text(v) if isinstance(v, str) else v for k, v in metadata.items()}
    return json.dumps(cleaned)


class PostgresStore(_SQLStore):
    """PostgreSQL through psycopg 3; reconnects on the next call after a lost connection."""

    _param = "%s"

    def __init__(
        self,
        url: str,
        *,
        connect_timeout_s: int = 10,
        migrations: Sequence[Migration] = POSTGRES_MIGRATIONS,
    ):
        try:
            import psycopg
        except ImportError:
            raise MissingDependencyError("psycopg", "postgres") from None
        super().__init__(mask_url(url), migrations)
        self._psycopg = psycopg
        self._db_errors = (psycopg.Error,)
        self._conninfo = url
        self._connect_timeout_s = connect_timeout_s
        self._conn = self._connect()
        try:
            self._migrate()
        except BaseException:
            self._conn.close()
            raise

    def _connect(self) -> psycopg.Connection[tuple[Any, ...]]:
        given = self._psycopg.conninfo.conninfo_to_dict(self._conninfo)
        extra: dict[str, Any] = {}
        if "connect_timeout" not in given:
            extra["connect_timeout"] = self._connect_timeout_s
        if "application_name" not in given:
            extra["application_name"] = "modeltriage"
        try:
            # Autocommit so reads do not leave the session idle in a transaction;
            # every statement group runs inside an explicit conn.transaction().
            return self._psycopg.connect(self._conninfo, autocommit=True, **extra)
        except self._psycopg.Error as exc:
            raise LogStoreError(f"cannot connect: {exc}", self.url) from exc

    @contextlib.contextmanager
    def _transaction(self, *, write: bool) -> Iterator[None]:
        if self._conn.closed:
            self._conn = self._connect()
        with self._conn.transaction():
            yield

    def _execute(self, sql: str, params: Sequence[Any] = ()) -> _Cursor:
        return self._conn.execute(sql, params or None)

    def _executemany(self, sql: str, rows: Sequence[Sequence[Any]]) -> None:
        with self._conn.cursor() as cursor:
            cursor.executemany(sql, rows)

    def _bootstrap_sql(self) -> str:
        return (
            "CREATE TABLE IF NOT EXISTS schema_version (version INTEGER PRIMARY KEY, "
            "description TEXT NOT NULL, applied_at TIMESTAMPTZ NOT NULL)"
        )

    def _lock_for_migration(self) -> None:
        # Held until the transaction ends, so a second process opening at the same
        # moment waits here and then finds the migrations already applied.
        self._execute("SELECT pg_advisory_xact_lock(%s)", (_PG_MIGRATION_LOCK,))

    def _encode_time(self, value: datetime) -> datetime:
        return value

    def _decode_time(self, value: Any) -> datetime:
        if not isinstance(value, datetime):
            raise LogStoreError(f"expected a timestamp, got {value!r}", self.url)
        return value.astimezone(timezone.utc)

    def _encode_entry(self, entry: LogEntry) -> tuple[Any, ...]:
        return (
            entry.decision_id,
            entry.created_at,
            None if entry.text is None else _pg_text(entry.text),
            entry.text_sha256,
            entry.intent,
            entry.runner_up,
            entry.difficulty,
            entry.tier,
            entry.model,
            entry.confidence,
            entry.margin,
            entry.cascaded,
            entry.reason,
            entry.estimated_cost_usd,
            entry.latency_ms,
            entry.index_version,
            _pg_metadata(entry.metadata),
            entry.input_tokens,
            json.dumps(list(entry.fallbacks)),
            entry.cascade_to,
            entry.second_opinion,
        )

    def _text(self, text: str) -> str:
        return _pg_text(text)

    def _decode_entry(self, row: Sequence[Any]) -> LogEntry:
        values = dict(zip(_ENTRY_COLUMNS, row, strict=True))
        values["created_at"] = self._decode_time(values["created_at"])
        values["fallbacks"] = tuple(values["fallbacks"])
        return LogEntry(**values)

    def _feedback_insert_sql(self) -> str:
        # Casts because bare parameters in a SELECT list have no type to infer.
        return (
            "INSERT INTO feedback (decision_id, quality, source, model, created_at) "
            "SELECT %s::text, %s::float8, %s::text, %s::text, %s::timestamptz "
            "WHERE EXISTS (SELECT 1 FROM decisions WHERE decision_id = %s)"
        )

    def _close_connection(self) -> None:
        self._conn.close()


def write_entries(store: LogStore, entries: Sequence[Entry]) -> None:
    """Write decisions, then events; repeating it after a failure writes nothing twice
    (decision and event ids are unique)."""
    store.write_decisions([e for e in entries if isinstance(e, LogEntry)])
    store.write_events([e for e in entries if isinstance(e, EventEntry)])
