"""The SQLite decision log store: one file in WAL mode, for a single host."""

from __future__ import annotations

import contextlib
import json
import sqlite3
import time
from collections.abc import Iterator, Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from modeltriage.errors import LogStoreError
from modeltriage.log.entries import Metadata
from modeltriage.log.migrations import SQLITE_MIGRATIONS, SQLITE_VERSION_TABLE, Migration
from modeltriage.log.sql import Cursor, SQLStore, storable


class SQLiteStore(SQLStore):
    """A SQLite file in WAL mode, so readers never wait for the writer thread."""

    _param = "?"
    _db_errors = (sqlite3.Error,)
    _version_table = SQLITE_VERSION_TABLE
    _feedback_insert_sql = (
        "INSERT INTO feedback (decision_id, quality, source, model, created_at) "
        "SELECT ?, ?, ?, ?, ? WHERE EXISTS (SELECT 1 FROM decisions WHERE decision_id = ?)"
    )

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
        # A column that is not UTF-8 (written by another tool) reads as lone surrogates,
        # which entries.repair_stored turns into U+FFFD: it never breaks a read.
        self._conn.text_factory = _tolerant_text
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

    def _execute(self, sql: str, params: Sequence[Any] = ()) -> Cursor:
        return self._conn.execute(sql, params)

    def _executemany(self, sql: str, rows: Sequence[Sequence[Any]]) -> None:
        self._conn.executemany(sql, rows)

    def _lock_for_migration(self) -> None:
        """BEGIN IMMEDIATE already holds the database's write lock."""

    def _encode_time(self, value: datetime) -> str:
        # Fixed-width UTC ISO text sorts in time order, so SQL can compare it directly.
        return value.astimezone(timezone.utc).isoformat(timespec="microseconds")

    def _decode_time(self, value: Any) -> datetime:
        return datetime.fromisoformat(value)

    def _text(self, text: str) -> str:
        return storable(text)

    def _encode_metadata(self, metadata: Metadata) -> str:
        # ASCII escapes keep lone surrogates intact through the database.
        return json.dumps(dict(metadata))

    def _decode_json(self, value: Any) -> Any:
        return json.loads(value)

    def _close_connection(self) -> None:
        self._conn.close()


def _tolerant_text(raw: bytes) -> str:
    return raw.decode("utf-8", "surrogateescape")
