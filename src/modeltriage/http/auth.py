"""Who may call what: FastAPI dependencies checking ``Authorization: Bearer KEY``.

A placeholder until the service's own auth lands: ``require_admin`` checks the key
against ``MODELTRIAGE_ADMIN_KEYS`` (comma-separated) and ``require_route`` lets every
caller through. Only these two names are used elsewhere.
"""

from __future__ import annotations

import hmac
import os

from fastapi import HTTPException, Request

ADMIN_KEYS_ENV = "MODELTRIAGE_ADMIN_KEYS"


def _admin_keys() -> list[str]:
    return [k.strip() for k in os.environ.get(ADMIN_KEYS_ENV, "").split(",") if k.strip()]


def require_route(request: Request) -> None:
    """Anyone may route (placeholder)."""


def require_admin(request: Request) -> None:
    """Refuse unless the request carries one of the configured admin keys: 403 when no
    key is configured (nobody may), 401 when the key is missing or wrong."""
    keys = _admin_keys()
    if not keys:
        raise HTTPException(403, f"no admin key is configured: set {ADMIN_KEYS_ENV} to allow this")
    scheme, _, given = request.headers.get("authorization", "").partition(" ")
    supplied = given.strip().encode("utf-8", "backslashreplace")
    ok = scheme.lower() == "bearer" and any(
        hmac.compare_digest(supplied, key.encode("utf-8")) for key in keys
    )
    if not ok:
        raise HTTPException(
            401,
            "an admin key is needed: Authorization: Bearer KEY",
            headers={"WWW-Authenticate": "Bearer"},
        )
