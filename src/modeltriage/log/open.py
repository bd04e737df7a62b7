"""Opening the store a log URL names: SQLite for a single host, PostgreSQL for a fleet,
memory for tests."""

from __future__ import annotations

from modeltriage.errors import LogStoreError
from modeltriage.log.memory import MemoryStore
from modeltriage.log.postgres import PostgresStore
from modeltriage.log.sqlite import SQLiteStore
from modeltriage.log.store import LogStore
from modeltriage.log.urls import MEMORY_URL, is_postgres_url, mask_url, sqlite_path


def open_store(url: str) -> LogStore:
    """Open (creating and migrating as needed) the store ``url`` names.

    ``sqlite:///abs/path.db``, ``sqlite:relative.db`` or a plain path: SQLite.
    ``postgresql://...`` or ``postgres://...``: PostgreSQL (needs ``modeltriage[postgres]``).
    ``memory:``: a fresh in-memory store, gone when the process ends.
    """
    url = url.strip()
    if url == MEMORY_URL:
        return MemoryStore()
    if is_postgres_url(url):
        return PostgresStore(url)
    path = sqlite_path(url)
    if path is None:
        raise LogStoreError(
            "unsupported log URL; use a file path, sqlite:///path.db, postgresql://... or memory:",
            mask_url(url),
        )
    return SQLiteStore(path)
