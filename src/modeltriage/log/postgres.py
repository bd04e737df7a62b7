"""The PostgreSQL decision log store, through psycopg 3, for a fleet of routers sharing
one log (``pip install 'modeltriage[postgres]'``)."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator, Sequence
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

from modeltriage.errors import LogStoreError, MissingDependencyError
from modeltriage.log.entries import Metadata
from modeltriage.log.migrations import POSTGRES_MIGRATIONS, POSTGRES_VERSION_TABLE, Migration
from modeltriage.log.sql import Cursor, SQLStore, storable
from modeltriage.log.urls import mask_url

if TYPE_CHECKING:
    import psycopg

# A fixed key for pg_advisory_xact_lock: "mtlog" in ASCII.
_PG_MIGRATION_LOCK = 0x6D746C6F67


def _pg_text(text: str) -> str:
    # PostgreSQL text and jsonb cannot hold NUL; U+FFFD keeps the rest of the row.
    return storable(text).replace("\x00", "\ufffd")


def _pg_metadata(metadata: Metadata) -> str:
    cleaned = {_pg_text(k): _pg_text(v) if isinstance(v, str) else v for k, v in metadata.items()}
    return json.dumps(cleaned)


class PostgresStore(SQLStore):
    """PostgreSQL through psycopg 3; reconnects on the next call after a lost connection."""

    _param = "%s"
    _version_table = POSTGRES_VERSION_TABLE
    # Casts because bare parameters in a SELECT list have no type to infer.
    _feedback_insert_sql = (
        "INSERT INTO feedback (decision_id, quality, source, model, created_at) "
        "SELECT %s::text, %s::float8, %s::text, %s::text, %s::timestamptz "
        "WHERE EXISTS (SELECT 1 FROM decisions WHERE decision_id = %s)"
    )

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

    def _execute(self, sql: str, params: Sequence[Any] = ()) -> Cursor:
        return self._conn.execute(sql, params or None)

    def _executemany(self, sql: str, rows: Sequence[Sequence[Any]]) -> None:
        with self._conn.cursor() as cursor:
            cursor.executemany(sql, rows)

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

    def _text(self, text: str) -> str:
        return _pg_text(text)

    def _encode_metadata(self, metadata: Metadata) -> str:
        return _pg_metadata(metadata)

    def _decode_json(self, value: Any) -> Any:
        return value  # psycopg loads jsonb itself

    def _close_connection(self) -> None:
        self._conn.close()
