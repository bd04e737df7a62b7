"""What ``modeltriage serve`` passes to the app and to uvicorn, from its flags and the
environment: API keys, the loopback rule, CORS origins, the log format, timeouts.

Refused before anything starts: route endpoints with no route key on a host other
than loopback (unless ``--insecure-no-auth``), a bad keys file (file:line).
"""

from __future__ import annotations

import argparse
import ipaddress
import os
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from modeltriage.errors import InputError

if TYPE_CHECKING:
    from modeltriage.http.auth import ApiKeys


def add_serve_security_args(parser: argparse.ArgumentParser) -> None:
    """The flags of ``serve`` about who may call it and what it logs."""
    parser.add_argument(
        "--keys-file",
        help="API keys, one `route KEY` or `admin KEY` a line (# comments); added to "
        "$MODELTRIAGE_API_KEYS and $MODELTRIAGE_ADMIN_KEYS (comma-separated)",
    )
    parser.add_argument(
        "--insecure-no-auth",
        action="store_true",
        help="serve the route endpoints without a key on a host other than loopback",
    )
    parser.add_argument(
        "--cors-origin",
        action="append",
        default=[],
        metavar="ORIGIN",
        help="a browser origin allowed to call the service, e.g. https://app.example.com "
        "(repeat it; also $MODELTRIAGE_CORS_ORIGINS, comma-separated; default: none, CORS off)",
    )
    parser.add_argument(
        "--log-format",
        choices=["text", "json"],
        default="text",
        help="json: one JSON object a line with the request id (default: %(default)s)",
    )
    parser.add_argument(
        "--timeout-keep-alive",
        type=float,
        default=5.0,
        help="seconds an idle keep-alive connection stays open (default: %(default)s)",
    )
    parser.add_argument(
        "--timeout-headers",
        type=float,
        default=10.0,
        help="seconds a connection has to send a request line and headers, from connecting "
        "or from its previous response; then 408 and closed (default: %(default)s)",
    )


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


@dataclass
class ServePlan:
    keys: ApiKeys
    cors_origins: list[str]
    json_logs: bool
    uvicorn: dict[str, Any] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    header_timeout_s: float = 10.0


def serve_plan(args: argparse.Namespace, environ: dict[str, str] | None = None) -> ServePlan:
    """The keys, origins and server settings ``serve`` runs with; an InputError when the
    flags would expose an open service."""
    from modeltriage.http.auth import CORS_ENV, ApiKeys
    from modeltriage.http.header_guard import PROTOCOL

    env = dict(os.environ) if environ is None else environ
    keys = ApiKeys.load(args.keys_file, env)
    warnings: list[str] = []
    if keys.route_open and not is_loopback(args.host):
        if not args.insecure_no_auth:
            raise InputError(
                f"refusing to serve on {args.host} with no route key: set "
                "MODELTRIAGE_API_KEYS or --keys-file, serve on 127.0.0.1, or give "
                "--insecure-no-auth"
            )
        warnings.append(f"route endpoints on {args.host} take requests without a key")
    if not keys.admin_enabled:
        warnings.append("admin endpoints are off (no admin key)")
    origins = [*args.cors_origin, *(o.strip() for o in env.get(CORS_ENV, "").split(","))]
    origins = list(dict.fromkeys(o for o in origins if o))
    if "*" in origins:
        raise InputError("--cors-origin: name each origin; `*` would let any web page call it")
    if not args.timeout_keep_alive > 0:
        raise InputError("--timeout-keep-alive must be more than 0 seconds")
    if not 0 < args.timeout_headers <= 3600:
        raise InputError("--timeout-headers must be more than 0 and at most 3600 seconds")
    # uvicorn waits for headers without a deadline: its protocol, with one (the workers
    # of --workers N import it by name and read the deadline from their environment).
    settings: dict[str, Any] = {"timeout_keep_alive": args.timeout_keep_alive, "http": PROTOCOL}
    if args.log_format == "json":
        # Logging is set up by the caller (observe.json_logging); uvicorn must not redo it.
        settings |= {"log_config": None, "access_log": False}
    return ServePlan(
        keys, origins, args.log_format == "json", settings, warnings, float(args.timeout_headers)
    )


def worker_environment(plan: ServePlan) -> dict[str, str]:
    """What ``serve --workers N`` puts in its workers' environment so each builds the same
    app: the keys (from the environment and ``--keys-file`` together) and the origins."""
    from modeltriage.http.auth import ADMIN_KEYS_ENV, CORS_ENV, ROUTE_KEYS_ENV
    from modeltriage.http.header_guard import HEADER_TIMEOUT_ENV
    from modeltriage.http.observe import LOG_FORMAT_ENV

    return {
        ROUTE_KEYS_ENV: ",".join(plan.keys.route),
        ADMIN_KEYS_ENV: ",".join(plan.keys.admin),
        CORS_ENV: ",".join(plan.cors_origins),
        LOG_FORMAT_ENV: "json" if plan.json_logs else "text",
        HEADER_TIMEOUT_ENV: repr(plan.header_timeout_s),
    }
