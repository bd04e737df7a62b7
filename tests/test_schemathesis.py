"""Schemathesis over the service's own OpenAPI schema: every operation, in-process
(ASGI), through the fake encoder, with an admin key (which also passes the route role).
Every response is checked: no 5xx, the status is one the schema documents, the body
conforms to the documented response schema, and so do the content type and headers.

The default run takes MODELTRIAGE_SCHEMATHESIS_EXAMPLES examples per operation (default
20) to stay well under a minute; a longer run:

    MODELTRIAGE_SCHEMATHESIS_EXAMPLES=500 pytest tests/test_schemathesis.py
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode, checks
from schemathesis.python import asgi

from modeltriage import HashingEncoder
from modeltriage.http.app import create_app
from modeltriage.http.auth import ApiKeys

from .conftest import ROUTER_YAML, TINY_INTENTS, write_intents

EXAMPLES = int(os.environ.get("MODELTRIAGE_SCHEMATHESIS_EXAMPLES", "20"))
# The default run is the same every time (CI); a longer one explores new cases.
DERANDOMIZE = "MODELTRIAGE_SCHEMATHESIS_EXAMPLES" not in os.environ
ROUTE_KEY = "schema-route-key-0123456789"
ADMIN_KEY = "schema-admin-key-0123456789"
HEADERS = {"authorization": f"Bearer {ADMIN_KEY}"}
# Every response check but positive_data_acceptance: a request the schema allows may still
# be refused for what only the router knows (an unknown model or step, a blank text, a
# decision id that is not logged), with a documented 4xx.
CHECKS = [
    checks.not_a_server_error,
    checks.status_code_conformance,
    checks.content_type_conformance,
    checks.response_headers_conformance,
    checks.response_schema_conformance,
    checks.negative_data_rejection,
]
SENT: Counter[str] = Counter()
SAMPLES = Path(__file__).resolve().parent.parent / "examples" / "traffic"


@pytest.fixture(scope="module")
def api_schema(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """The real app (loaded from an intents directory, so reload and the explorer's apply
    have files to work on) with a SQLite decision log and both kinds of key."""
    base = tmp_path_factory.mktemp("schemathesis")
    log = base / "log.db"
    yaml = ROUTER_YAML + f"log: {{url: {log}}}\n"
    directory = write_intents(base / "intents", TINY_INTENTS, yaml)
    app = create_app(
        directory,
        encoder=HashingEncoder(),
        build_if_needed=True,
        keys=ApiKeys(route=(ROUTE_KEY,), admin=(ADMIN_KEY,)),
        samples_dir=SAMPLES,
    )
    yield schemathesis.openapi.from_asgi("/openapi.json", app)
    # The ASGI transport keeps the app's lifespan running until told: end it here, so
    # the decision log is flushed and closed with the module.
    asgi.shutdown_lifespans()


def _run(operation: Any, mode: GenerationMode) -> str | None:
    """Generate ``EXAMPLES`` cases of ``operation`` in ``mode``; the first failure, or None."""

    @given(case=operation.as_strategy(generation_mode=mode))
    @settings(
        max_examples=EXAMPLES,
        deadline=None,
        database=None,
        derandomize=DERANDOMIZE,
        suppress_health_check=list(HealthCheck),
    )
    def check(case: Any) -> None:
        SENT[operation.label] += 1
        case.call_and_validate(headers=HEADERS, checks=CHECKS)

    try:
        check()
    except Unsatisfiable:
        return None  # nothing to send: an operation without parameters has no negative case
    except KeyboardInterrupt:
        raise
    except BaseException as exc:  # schemathesis raises a group of failures, not an Exception
        return f"{operation.label} ({mode.value}): {str(exc)[:2000]}"
    return None


def test_every_operation_conforms_to_the_schema(api_schema: Any) -> None:
    # schemathesis.pytest's lazy fixture loader does not run under pytest 9 (it sets a
    # node attribute pytest no longer has): the operations are walked here instead.
    operations = [result.ok() for result in api_schema.get_all_operations()]
    assert len(operations) >= 15
    failures = [
        failure
        for operation in operations
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE)
        if (failure := _run(operation, mode)) is not None
    ]
    print(f"\nschemathesis: {SENT.total()} cases over {len(SENT)} operations")
    assert not failures, "\n\n".join(failures)
