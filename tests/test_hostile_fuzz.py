"""Generated hostile traffic over every endpoint: no response is a 500.

Bodies are valid requests with a field replaced, dropped or added (NaN, infinities,
400-digit integers, lone surrogates, megabyte strings, deep nesting, wrong types), whole
bodies of random JSON or bytes, odd content types, odd path parameters, and with no key,
a wrong key, a route key or an admin key.

The default run sends MODELTRIAGE_HOSTILE_EXAMPLES cases (default 400) to stay fast;
the issue's figure is 10,000:

    MODELTRIAGE_HOSTILE_EXAMPLES=10000 pytest tests/test_hostile_fuzz.py -s
"""

from __future__ import annotations

import json
import os
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from modeltriage import HashingEncoder, Router, load_intents
from modeltriage.http.app import create_app
from modeltriage.http.auth import ApiKeys
from modeltriage.log.sqlite import SQLiteStore

from .conftest import ROUTER_YAML, TINY_INTENTS, write_intents

EXAMPLES = int(os.environ.get("MODELTRIAGE_HOSTILE_EXAMPLES", "400"))
ROUTE_KEY = "fuzz-route-key-0123456789"
ADMIN_KEY = "fuzz-admin-key-0123456789"
AUTH = [
    {},
    {"authorization": f"Bearer {ROUTE_KEY}"},
    {"authorization": f"Bearer {ADMIN_KEY}"},
    {"authorization": "Bearer nope"},
    {"authorization": b"Basic \xe9\xff"},
]
ASK = "when do you open on sunday"
POSTS: dict[str, dict[str, Any]] = {
    "/route": {
        "text": ASK,
        "max_cost_usd": 0.01,
        "max_latency_ms": 500,
        "metadata": {"tenant": "a"},
        "explain": True,
    },
    "/route#messages": {"messages": [{"role": "user", "content": ASK}], "conversation_id": "c"},
    "/route/batch": {"texts": [ASK, "refund please"], "step": None},
    "/feedback": {"decision_id": "d-1", "quality": 0.5, "source": "user", "model": "small-a"},
    "/escalate": {
        "answer": "B",
        "model": "small-a",
        "confidence": 0.2,
        "logprobs": [-0.1, -2.0],
        "finish_reason": "stop",
        "second_answer": "C",
        "choices": {"A": "x", "B": "y"},
    },
    "/next-model": {"model": "small-a", "fallbacks": ["mid-a"], "failed": ["small-a"]},
    "/health/models/{name}/unhealthy": {"cooldown_s": 30},
}
GETS = ["/decisions/{id}", "/health/models", "/healthz", "/readyz", "/metrics"]
DELETES = ["/health/models/{name}"]
CONTENT_TYPES = ["application/json"] * 6 + [
    "text/plain",
    "application/json; charset=latin-1",
    "application/x-www-form-urlencoded",
    "",
]

characters = st.characters() | st.characters(categories=["Cs"])
strings = (
    st.text(characters, max_size=40)
    | st.sampled_from(["", " ", "small-a", "big-a", "A", "d-1", "x" * 70_000, "é" * 300])
    | st.integers(0, 200).map(lambda n: "y" * n)
)
numbers = (
    st.integers(-(10**400), 10**400)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.sampled_from([0, -1, 1e308, 1e-320, 2**63, 3601, 1e12])
)
leaves = st.none() | st.booleans() | numbers | strings
json_values = st.recursive(
    leaves,
    lambda inner: st.lists(inner, max_size=6) | st.dictionaries(strings, inner, max_size=6),
    max_leaves=25,
)
deep = st.integers(1, 5000).map(lambda n: "[" * n + "]" * n)
path_parts = (strings | st.sampled_from(["small-a", "coder", "..%2F..", "%00", "a/b", "d-1"])).map(
    # As a client sends it: percent-encoded UTF-8 (a lone surrogate as its CESU bytes).
    # Clients cap a URL's length (httpx at 64 kB): longer ones never reach a server.
    lambda part: quote(part.encode("utf-8", "surrogatepass")[:4000], safe="%/.") or "x"
)


def _dump(value: Any) -> bytes:
    # ensure_ascii escapes lone surrogates; allow_nan writes NaN and Infinity literals.
    return json.dumps(value, allow_nan=True).encode()


@st.composite
def mutated(draw: st.DrawFn, base: dict[str, Any]) -> bytes:
    body = dict(base)
    for _ in range(draw(st.integers(1, 3))):
        action = draw(st.sampled_from(["replace", "replace", "drop", "add", "nest"]))
        keys = list(body)
        if action == "drop" and keys:
            del body[draw(st.sampled_from(keys))]
        elif action == "add":
            body[draw(strings)] = draw(json_values)
        elif action == "nest" and keys:
            key = draw(st.sampled_from(keys))
            body[key] = [body[key]] * draw(st.integers(0, 300))
        elif keys:
            body[draw(st.sampled_from(keys))] = draw(json_values)
    return _dump(body)


@st.composite
def requests(draw: st.DrawFn) -> tuple[str, str, bytes | None, dict[str, str | bytes]]:
    # Mostly authorised, so most cases get past the key check to the endpoint.
    weights = [1, 2, 4, 1, 1]
    auth = draw(st.sampled_from([a for a, w in zip(AUTH, weights, strict=True) for _ in range(w)]))
    headers: dict[str, str | bytes] = dict(auth)
    kind = draw(st.sampled_from(["post"] * 6 + ["get", "delete"]))
    if kind == "get":
        path = draw(st.sampled_from(GETS)).replace("{id}", draw(path_parts))
        return "GET", path, None, headers
    if kind == "delete":
        return "DELETE", DELETES[0].replace("{name}", draw(path_parts)), None, headers
    template = draw(st.sampled_from(list(POSTS)))
    base = POSTS[template]
    path = template.split("#")[0].replace("{name}", draw(path_parts))
    body = draw(
        mutated(base)
        | st.builds(_dump, json_values)
        | st.binary(max_size=200)
        | deep.map(str.encode)
        | st.just(b"")
    )
    content_type = draw(st.sampled_from(CONTENT_TYPES))
    if content_type:
        headers["content-type"] = content_type
    return "POST", path, body, headers


STATUSES: Counter[int] = Counter()


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    yaml = ROUTER_YAML + "limits: {max_body_bytes: 262144, max_batch_bytes: 65536}\n"
    directory: Path = write_intents(tmp_path_factory.mktemp("fuzz") / "i", TINY_INTENTS, yaml)
    store = SQLiteStore(tmp_path_factory.mktemp("fuzzlog") / "log.db")
    router = Router.in_memory(
        load_intents(directory), HashingEncoder(), exact_numpy=True, log=store
    )
    keys = ApiKeys(route=(ROUTE_KEY,), admin=(ADMIN_KEY,))
    with (
        router,
        TestClient(create_app(router=router, keys=keys), raise_server_exceptions=False) as c,
    ):
        yield c


@settings(
    max_examples=EXAMPLES,
    deadline=None,
    database=None,
    suppress_health_check=list(HealthCheck),
)
@given(request=requests())
def test_no_generated_request_gets_a_500(
    client: TestClient, request: tuple[str, str, bytes | None, dict[str, str | bytes]]
) -> None:
    method, path, body, headers = request
    r = client.request(method, path, content=body, headers=headers)
    STATUSES[r.status_code] += 1
    assert r.status_code < 500, (method, path, (body or b"")[:300], r.text[:500])
    assert r.headers["x-request-id"]
    if r.headers.get("content-type", "").startswith("application/json"):
        r.json()  # always valid JSON


def test_report_the_hostile_run() -> None:
    """Prints the statuses of the run above (pytest -s), for the record."""
    total = sum(STATUSES.values())
    print(f"\nhostile fuzz: {total} requests, statuses {dict(sorted(STATUSES.items()))}")
    assert not any(status >= 500 for status in STATUSES)
