"""API keys and the two FastAPI dependencies that check them.

Keys are sent as ``Authorization: Bearer KEY``. They come from ``MODELTRIAGE_API_KEYS``
and ``MODELTRIAGE_ADMIN_KEYS`` (comma-separated) and from a keys file (``--keys-file``:
one ``ROLE KEY`` a line, ``#`` comments), never from router.yaml, and are never logged
(:class:`ApiKeys` prints as counts only).

Two roles: ``route`` (route, batch, escalate, next-model, feedback, decisions) and
``admin`` (health marks, reload); an admin key also passes ``route``. With no route key the
route endpoints are open; with no admin key the admin endpoints are off (403), so a
default install has no unauthenticated endpoint that changes state.

A key is compared with every configured key, in constant time over their SHA-256
digests, so neither the match nor its position nor the key's length shows in the timing.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from fastapi import HTTPException, Request

from modeltriage.errors import ConfigError

Role = Literal["route", "admin"]
ROLES: tuple[Role, ...] = ("route", "admin")
ROUTE_KEYS_ENV = "MODELTRIAGE_API_KEYS"
ADMIN_KEYS_ENV = "MODELTRIAGE_ADMIN_KEYS"
# Browser origins allowed to call the service, comma-separated (none: CORS is off).
CORS_ENV = "MODELTRIAGE_CORS_ORIGINS"
MIN_KEY_CHARS = 16
MAX_KEY_CHARS = 256
# What a key may hold: printable ASCII without spaces or commas (the env separator).
_KEY = re.compile(r"[!-+\--~]+")
_CHALLENGE = {"WWW-Authenticate": 'Bearer realm="modeltriage"'}
ENABLE_ADMIN = (
    f"admin endpoints are off: set {ADMIN_KEYS_ENV} or give `serve --keys-file` an "
    "`admin KEY` line, then send `Authorization: Bearer KEY`"
)


def _digest(key: str) -> bytes:
    return hashlib.sha256(key.encode("utf-8", "surrogatepass")).digest()


def check_key(key: str) -> str | None:
    """Why ``key`` cannot be an API key (never quoting it), or None when it can."""
    if len(key) < MIN_KEY_CHARS:
        return f"a key needs at least {MIN_KEY_CHARS} characters"
    if len(key) > MAX_KEY_CHARS:
        return f"a key has at most {MAX_KEY_CHARS} characters"
    if _KEY.fullmatch(key) is None:
        return "a key holds printable ASCII only, without spaces or commas"
    return None


@dataclass(frozen=True)
class ApiKeys:
    """The configured keys by role. Empty ``route``: route endpoints are open; empty
    ``admin``: admin endpoints are off."""

    route: tuple[str, ...] = field(default=(), repr=False)
    admin: tuple[str, ...] = field(default=(), repr=False)
    _digests: tuple[tuple[bytes, Role], ...] = field(
        init=False, repr=False, compare=False, default=()
    )

    def __post_init__(self) -> None:
        for role, keys in (("route", self.route), ("admin", self.admin)):
            for key in keys:
                problem = check_key(key)
                if problem is not None:
                    raise ConfigError(f"{role} key: {problem}")
        digests: list[tuple[bytes, Role]] = [(_digest(k), "admin") for k in self.admin]
        digests += [(_digest(k), "route") for k in self.route]
        object.__setattr__(self, "_digests", tuple(digests))

    def __repr__(self) -> str:
        return f"ApiKeys(route={len(self.route)} keys, admin={len(self.admin)} keys)"

    @property
    def route_open(self) -> bool:
        """No route key: the route endpoints take any request."""
        return not self.route

    @property
    def admin_enabled(self) -> bool:
        return bool(self.admin)

    def role_of(self, key: str) -> Role | None:
        """The role ``key`` grants (admin wins), or None. Every configured key is compared,
        whatever matches first."""
        given = _digest(key)
        found: Role | None = None
        for digest, role in self._digests:
            if hmac.compare_digest(given, digest) and found != "admin":
                found = role
        return found

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> ApiKeys:
        """Keys of ``MODELTRIAGE_API_KEYS`` and ``MODELTRIAGE_ADMIN_KEYS``."""
        env = os.environ if environ is None else environ

        def split(name: str) -> tuple[str, ...]:
            keys = tuple(k.strip() for k in env.get(name, "").split(",") if k.strip())
            for key in keys:
                problem = check_key(key)
                if problem is not None:
                    raise ConfigError(f"${name}: {problem}")
            return keys

        return cls(route=split(ROUTE_KEYS_ENV), admin=split(ADMIN_KEYS_ENV))

    @classmethod
    def from_file(cls, path: Path | str) -> ApiKeys:
        """Keys of a keys file: one ``ROLE KEY`` a line (``route`` or ``admin``), blank
        lines and ``#`` comments ignored; a bad line is a ConfigError naming file:line."""
        path = Path(path)
        try:
            lines = path.read_text(encoding="utf-8").splitlines()
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError(f"cannot read the keys file: {exc}", path) from None
        keys: dict[Role, list[str]] = {"route": [], "admin": []}
        for number, line in enumerate(lines, start=1):
            words = line.split("#", 1)[0].split()
            if not words:
                continue
            if len(words) != 2 or words[0] not in ROLES:
                raise ConfigError("expected `route KEY` or `admin KEY`", path, number)
            problem = check_key(words[1])
            if problem is not None:
                raise ConfigError(problem, path, number)
            keys["admin" if words[0] == "admin" else "route"].append(words[1])
        return cls(route=tuple(keys["route"]), admin=tuple(keys["admin"]))

    @classmethod
    def load(
        cls, keys_file: Path | str | None = None, environ: Mapping[str, str] | None = None
    ) -> ApiKeys:
        """The keys of the environment and, if given, of ``keys_file`` together."""
        env = cls.from_env(environ)
        if keys_file is None:
            return env
        file = cls.from_file(keys_file)
        return cls(route=_union(env.route, file.route), admin=_union(env.admin, file.admin))


def _union(first: Iterable[str], second: Iterable[str]) -> tuple[str, ...]:
    return tuple(dict.fromkeys([*first, *second]))


def _bearer(request: Request) -> str | None:
    header = request.headers.get("authorization")
    if header is None:
        return None
    scheme, _, token = header.partition(" ")
    token = token.strip()
    return token if scheme.lower() == "bearer" and token else None


def _keys(request: Request) -> ApiKeys:
    keys: ApiKeys = request.app.state.api_keys
    return keys


def _role(request: Request, keys: ApiKeys) -> Role:
    token = _bearer(request)
    if token is None:
        raise HTTPException(401, "send `Authorization: Bearer KEY`", headers=_CHALLENGE)
    role = keys.role_of(token)
    if role is None:
        raise HTTPException(401, "unknown API key", headers=_CHALLENGE)
    return role


# The two dependencies are async although they never await: FastAPI runs a sync
# dependency in its thread pool, a thread hop on every request for a dictionary lookup.
async def require_route(request: Request) -> None:
    """A dependency: with route keys configured, the request carries a route or admin key
    (401 otherwise); with none, anyone passes."""
    keys = _keys(request)
    if not keys.route_open:
        _role(request, keys)


async def require_admin(request: Request) -> None:
    """A dependency: the request carries an admin key. 403 when no admin key is
    configured (saying how to enable them) or for a route key; 401 for none or a wrong one."""
    keys = _keys(request)
    if not keys.admin_enabled:
        raise HTTPException(403, ENABLE_ADMIN)
    if _role(request, keys) != "admin":
        raise HTTPException(403, "this endpoint needs an admin key; a route key was sent")
