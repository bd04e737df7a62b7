"""What a decision log URL names: which store, which SQLite file, the URL fit to print
(password masked), and which URL applies (explicit, environment or router.yaml)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import parse_qsl, quote, urlencode, urlsplit, urlunsplit

if TYPE_CHECKING:
    from modeltriage.core.config import LogSettings

MEMORY_URL = "memory:"
LOG_URL_ENV = "MODELTRIAGE_LOG_URL"
"""The environment variable that overrides router.yaml's ``log.url`` (passwords stay out
of YAML)."""

_MASK = "***"


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


def is_postgres_url(url: str) -> bool:
    return url.startswith(("postgresql://", "postgres://"))


def sqlite_path(url: str) -> Path | None:
    """The file a SQLite URL or plain path names, or None when ``url`` is not SQLite."""
    if url == MEMORY_URL or is_postgres_url(url):
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


def configured_log_url(
    settings: LogSettings, base: Path | str, explicit: str | None = None
) -> str | None:
    """The decision log's URL, or None when logging is off.

    The first that is set wins: ``explicit`` (a ``--url``, a URL given to the router),
    then ``$MODELTRIAGE_LOG_URL`` (when not empty), then router.yaml's ``log.url``. A
    relative SQLite path in it is made relative to ``base``, the intents directory.
    """
    url = explicit if explicit is not None else os.environ.get(LOG_URL_ENV) or settings.url
    return None if url is None else resolve_url(url, base)


def store_kind(url: str) -> str:
    """Which kind of store ``url`` names (``memory``, ``postgresql`` or ``sqlite``), fit
    to show anyone: no path, host or user."""
    if url == MEMORY_URL:
        return "memory"
    return "postgresql" if is_postgres_url(url) else "sqlite"
