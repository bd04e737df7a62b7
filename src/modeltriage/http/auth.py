"""Placeholder until API keys land: admin endpoints are off, so a default install has no
unauthenticated endpoint that changes state. Replaced by the API-key module (issue 12)."""

from __future__ import annotations

from fastapi import HTTPException, Request


def require_admin(request: Request) -> None:
    """Refuse every admin request (a FastAPI dependency)."""
    raise HTTPException(
        403,
        "admin endpoints are off: API keys are not available in this build; "
        "reload with SIGHUP or `serve --watch` instead",
    )
