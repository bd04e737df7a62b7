"""Hostile input over every endpoint: NaN, infinities, numbers too large for a float,
lone surrogates and wrong types in every field get a 4xx with a JSON ``detail``, never a
500; and a refused request leaves the keep-alive connection usable."""

from __future__ import annotations

import copy
import itertools
import json
import random
import socket
import threading
import time
from collections.abc import Iterator

import httpx
import pytest
import uvicorn
from fastapi.testclient import TestClient

from modeltriage import HashingEncoder, Router, load_intents
from modeltriage.http.app import create_app
from modeltriage.log.memory import MemoryStore

from .conftest import ADMIN, TEST_KEYS, TINY_INTENTS, write_intents

JSON = {"content-type": "application/json"}
BIG = "1" + "0" * 400  # a 400-digit integer: overflows a float
PLACEHOLDER = '"@@hostile@@"'

NON_FINITE = ["NaN", "Infinity", "-Infinity", "1e309", "-1e309"]
HUGE = [BIG, "-" + BIG]
SURROGATES = ['"\\ud800"', '"x\\udfff"', '"\\udc80\\ud800"', '"ok \\uDBFF"']
NOT_A_NUMBER = ['"1"', "true", "[]", "{}", '"\\ud800"']
NOT_A_STRING = ["1", "1.5", "true", "[]", "{}", "NaN", BIG]

Path_ = tuple[str | int, ...]
ROUTE = {"text": "when do you open on sunday"}
MESSAGES = {"messages": [{"role": "user", "content": "when do you open on sunday"}]}
BATCH = {"texts": ["when do you open on sunday"]}
FEEDBACK = {"decision_id": "d-1", "quality": 0.5}
ESCALATE = {"answer": "We open at nine.", "model": "small-a"}
NEXT = {"model": "small-a", "failed": ["small-a"]}
UNHEALTHY = "/health/models/small-a/unhealthy"

# (endpoint, a valid body, the field's path in it, the name a refusal must mention)
NUMBER_FIELDS: list[tuple[str, dict[str, object], Path_, str]] = [
    ("/route", ROUTE, ("max_latency_ms",), "max_latency_ms"),
    ("/route", ROUTE, ("max_cost_usd",), "max_cost_usd"),
    ("/route/batch", BATCH, ("max_latency_ms",), "max_latency_ms"),
    ("/route/batch", BATCH, ("max_cost_usd",), "max_cost_usd"),
    ("/feedback", FEEDBACK, ("quality",), "quality"),
    ("/escalate", ESCALATE, ("confidence",), "confidence"),
    ("/escalate", ESCALATE, ("logprobs", 0), "logprobs"),
    (UNHEALTHY, {}, ("cooldown_s",), "cooldown_s"),
]
# Numbers a field may hold, but not NaN or an infinity.
METADATA_NUMBER = ("/route", ROUTE, ("metadata", "n"), "metadata")

STRING_FIELDS: list[tuple[str, dict[str, object], Path_, str]] = [
    ("/route", ROUTE, ("text",), "text"),
    ("/route", ROUTE, ("step",), "step"),
    ("/route", ROUTE, ("conversation_id",), "conversation_id"),
    ("/route", MESSAGES, ("messages", 0, "content"), "messages"),
    ("/route", MESSAGES, ("messages", 0, "role"), "messages"),
    ("/route/batch", BATCH, ("texts", 0), "texts"),
    ("/route/batch", BATCH, ("step",), "step"),
    ("/route/batch", BATCH, ("conversation_id",), "conversation_id"),
    ("/feedback", FEEDBACK, ("decision_id",), "decision_id"),
    ("/feedback", FEEDBACK, ("source",), "source"),
    ("/feedback", FEEDBACK, ("model",), "model"),
    ("/escalate", ESCALATE, ("answer",), "answer"),
    ("/escalate", ESCALATE, ("model",), "model"),
    ("/escalate", ESCALATE, ("text",), "text"),
    ("/escalate", ESCALATE, ("decision_id",), "decision_id"),
    ("/escalate", ESCALATE, ("finish_reason",), "finish_reason"),
    ("/escalate", ESCALATE, ("second_answer",), "second_answer"),
    ("/escalate", ESCALATE, ("more_answers", 0), "more_answers"),
    ("/escalate", ESCALATE, ("choices", 0), "choices"),
    ("/escalate", {**ESCALATE, "choices": {"A": "x"}}, ("choices", "A"), "choices"),
    ("/next-model", NEXT, ("decision_id",), "decision_id"),
    ("/next-model", NEXT, ("model",), "model"),
    ("/next-model", NEXT, ("fallbacks", 0), "fallbacks"),
    ("/next-model", NEXT, ("failed", 0), "failed"),
]
# The whole-body cases mark `coder`, if any: an empty (null) body there is a valid call.
MARK_CODER = "/health/models/coder/unhealthy"
ENDPOINTS = ["/route", "/route/batch", "/feedback", "/escalate", "/next-model", MARK_CODER]


def with_literal(base: dict[str, object], path: Path_, literal: str) -> str:
    """``base`` as JSON text with ``literal`` (raw JSON, maybe not standard) at ``path``."""
    body: object = copy.deepcopy(base)
    node = body
    for step, following in itertools.pairwise(path):
        if isinstance(node, dict):
            node = node.setdefault(step, [] if isinstance(following, int) else {})
        else:
            assert isinstance(node, list) and isinstance(step, int)
            node = node[step]
    last = path[-1]
    if isinstance(node, list):
        assert isinstance(last, int)
        node[last:] = ["@@hostile@@"]
    else:
        assert isinstance(node, dict)
        node[last] = "@@hostile@@"
    text = json.dumps(body)
    assert text.count(PLACEHOLDER) == 1
    return text.replace(PLACEHOLDER, literal)


@pytest.fixture(scope="module")
def router(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Router]:
    directory = write_intents(tmp_path_factory.mktemp("hostile") / "intents", TINY_INTENTS)
    routed = Router.in_memory(
        load_intents(directory), HashingEncoder(), exact_numpy=True, log=MemoryStore()
    )
    yield routed
    routed.close()


@pytest.fixture(scope="module")
def client(router: Router) -> Iterator[TestClient]:
    # A 500 must show as a status, not as the server's exception re-raised in the test.
    app = create_app(router=router, keys=TEST_KEYS)
    with TestClient(app, raise_server_exceptions=False, headers=ADMIN) as c:
        yield c


def send(client: TestClient, path: str, body: str | bytes) -> httpx.Response:
    return client.post(path, content=body, headers=JSON)


def refused(r: httpx.Response, name: str | None = None, status: int | None = None) -> str:
    """Why ``r`` is not a clean refusal naming ``name`` (empty when it is one)."""
    if not 400 <= r.status_code < 500 or (status is not None and r.status_code != status):
        return f"status {r.status_code}: {r.text[:300]}"
    try:
        detail = r.json()["detail"]
    except (ValueError, KeyError):
        return f"no JSON detail: {r.text[:300]}"
    if name is not None and name not in json.dumps(detail):
        return f"the detail does not name {name}: {r.text[:300]}"
    return ""


@pytest.mark.parametrize(
    ("path", "base", "where", "name"),
    NUMBER_FIELDS,
    ids=[f"{p}:{'.'.join(map(str, w))}" for p, _, w, _ in NUMBER_FIELDS],
)
def test_hostile_numbers_are_refused_naming_the_field(
    client: TestClient, path: str, base: dict[str, object], where: Path_, name: str
) -> None:
    failures = []
    for literal in NON_FINITE + HUGE + NOT_A_NUMBER:
        why = refused(send(client, path, with_literal(base, where, literal)), name, 422)
        if why:
            failures.append(f"{literal[:12]}: {why}")
    assert not failures, "\n".join(failures)


def test_metadata_numbers_must_be_finite(client: TestClient) -> None:
    path, base, where, name = METADATA_NUMBER
    for literal in NON_FINITE:
        r = send(client, path, with_literal(base, where, literal))
        assert not refused(r, name, 422), (literal, r.text)
    for literal in HUGE:  # an integer must fit a float, like every other number
        r = send(client, path, with_literal(base, where, literal))
        assert not refused(r, name, 422), (literal, r.text)


@pytest.mark.parametrize(
    ("path", "base", "where", "name"),
    STRING_FIELDS,
    ids=[f"{p}:{'.'.join(map(str, w))}" for p, _, w, _ in STRING_FIELDS],
)
def test_hostile_strings_are_refused_naming_the_field(
    client: TestClient, path: str, base: dict[str, object], where: Path_, name: str
) -> None:
    failures = []
    for literal in SURROGATES + NOT_A_STRING:
        why = refused(send(client, path, with_literal(base, where, literal)), name, 422)
        if why:
            failures.append(f"{literal[:12]}: {why}")
    # A long string may be fine or too long, but never a server error.
    r = send(client, path, with_literal(base, where, json.dumps("x" * 100_000)))
    if r.status_code != 200 and refused(r):
        failures.append(f"100,000 characters: status {r.status_code}: {r.text[:300]}")
    assert not failures, "\n".join(failures)


@pytest.mark.parametrize("path", ["/route", "/route/batch"])
def test_hostile_booleans_are_refused_naming_the_field(client: TestClient, path: str) -> None:
    base = ROUTE if path == "/route" else BATCH
    for literal in ["NaN", "1", '"yes"', "[]", '"\\ud800"', BIG]:
        r = send(client, path, with_literal(base, ("explain",), literal))
        assert not refused(r, "explain", 422), (literal, r.text)


def test_metadata_values_are_refused_naming_the_field(client: TestClient) -> None:
    # A metadata value may be a string, a number, a boolean or null; nothing else.
    for literal in [*SURROGATES, "[]", "{}", "NaN"]:
        r = send(client, "/route", with_literal(ROUTE, ("metadata", "m"), literal))
        assert not refused(r, "metadata", 422), (literal, r.text)


def test_a_surrogate_key_is_refused(client: TestClient) -> None:
    r = send(client, "/route", '{"text": "hi", "metadata": {"\\ud800": 1}}')
    assert not refused(r, "metadata", 422), r.text
    assert "not valid Unicode" in r.text


@pytest.mark.parametrize("path", ENDPOINTS)
@pytest.mark.parametrize(
    "body",
    [
        "NaN",
        "Infinity",
        BIG,
        '"\\ud800"',
        "[]",
        "null",
        '"text"',
        '{"\\ud800": 1}',
        '{"text": "hi", "extra": NaN}',
        '{"text": "hi", "extra": "' + "x" * 100_000 + '"}',
        "{",
        "[" * 100_000,
        '{"text": 1' + "0" * 5000 + "}",
    ],
    ids=lambda body: body[:16],
)
def test_hostile_whole_bodies_are_4xx(client: TestClient, path: str, body: str) -> None:
    r = send(client, path, body)
    if (path, body) == (MARK_CODER, "null"):  # no body: the default cooldown
        assert r.status_code == 200, r.text
        return
    assert not refused(r), r.text
    assert len(r.content) < 5000  # the refusal does not echo what it refuses


@pytest.mark.parametrize(
    "url",
    [
        "/decisions/%ED%A0%80",
        "/decisions/%00",
        "/decisions/" + "x" * 5000,
        "/health/models/%ED%A0%80/unhealthy",
        "/health/models/" + "x" * 5000 + "/unhealthy",
    ],
)
def test_hostile_paths_are_4xx(client: TestClient, url: str) -> None:
    method = client.post if url.endswith("/unhealthy") else client.get
    r = method(url)
    assert not refused(r), r.text


def test_a_seeded_mix_of_hostile_values_is_never_a_server_error(client: TestClient) -> None:
    # Several hostile fields at once, in a body that is otherwise valid: whichever check
    # runs first, the answer is a 4xx with a detail (or a 200 for a value a field allows).
    fields = [*NUMBER_FIELDS, *STRING_FIELDS, METADATA_NUMBER]
    values = [*NON_FINITE, *HUGE, *SURROGATES, *NOT_A_NUMBER, *NOT_A_STRING, "null", '""']
    rng = random.Random(12)
    failures = []
    for _ in range(600):
        path, base, _, _ = rng.choice(fields)
        chosen = [f for f in fields if f[0] == path and f[1] is base]
        body = json.loads(json.dumps(base))
        literals = {}
        for _, _, where, _ in rng.sample(chosen, k=min(len(chosen), rng.randint(1, 3))):
            marker = f"@@{len(literals)}@@"
            body = json.loads(with_literal(body, where, json.dumps(marker)))
            literals[json.dumps(marker)] = rng.choice(values)
        text = json.dumps(body)
        for marker, literal in literals.items():
            text = text.replace(marker, literal)
        r = send(client, path, text)
        if r.status_code >= 300 and refused(r):
            failures.append(f"{path} {text[:200]}: {refused(r)}")
    assert not failures, "\n".join(failures[:10])


def test_valid_requests_still_work(client: TestClient) -> None:
    # The checks above must not refuse a text that merely mentions NaN or an emoji.
    r = send(client, "/route", '{"text": "why is NaN != NaN in Infinity loops \\ud83d\\ude00"}')
    assert r.status_code == 200, r.text
    r = send(client, "/escalate", '{"answer": "B", "model": "small-a", "logprobs": [-1e308]}')
    assert r.status_code == 200, r.text


# --- a real server: a refusal leaves the keep-alive connection usable ---------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@pytest.fixture
def server(fake_router: Router) -> Iterator[str]:
    port = free_port()
    config = uvicorn.Config(
        create_app(router=fake_router, keys=TEST_KEYS),
        host="127.0.0.1",
        port=port,
        log_level="warning",
    )
    running = uvicorn.Server(config)
    thread = threading.Thread(target=running.run, daemon=True)
    thread.start()
    for _ in range(200):
        if running.started:
            break
        time.sleep(0.05)
    assert running.started, "uvicorn did not start within 10 s"
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        running.should_exit = True
        thread.join(timeout=10)


def test_keep_alive_survives_hostile_requests(server: str) -> None:
    hostile = [
        ("/route", '{"text": "a", "max_cost_usd": NaN}'),
        ("/feedback", '{"decision_id": "\\ud800", "quality": 0.5}'),
        (UNHEALTHY, '{"cooldown_s": 1e12}'),
        ("/escalate", '{"answer": "b", "model": "small-a", "confidence": ' + BIG + "}"),
        ("/route", '{"text": "a", "max_latency_ms": 1e309}'),
    ]
    limits = httpx.Limits(max_connections=1, max_keepalive_connections=1)
    with httpx.Client(base_url=server, limits=limits, timeout=10, headers=ADMIN) as http:
        clients = set()
        for path, body in hostile:
            r = http.post(path, content=body, headers=JSON)
            assert not refused(r, status=422), (path, r.text)
            clients.add(r.extensions["network_stream"].get_extra_info("client_addr"))
            ok = http.post("/route", json={"text": "when do you open on sunday"})
            assert ok.status_code == 200, ok.text
            clients.add(ok.extensions["network_stream"].get_extra_info("client_addr"))
        # One client address: every request went over the same connection.
        assert len(clients) == 1, clients
        # The refused cooldown marked nothing.
        assert http.get("/health/models").json() == {"unhealthy": []}


def test_the_readme_nan_example(client: TestClient) -> None:
    r = send(client, "/route", '{"text": "hi", "max_cost_usd": NaN}')
    assert r.status_code == 422
    assert r.text == (
        '{"detail":[{"loc":["body","max_cost_usd"],'
        '"msg":"NaN is not a number JSON allows: give a finite number","type":"finite_number"}]}'
    )
