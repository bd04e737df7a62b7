"""What the service refuses before an endpoint runs (415, body cap while reading, read
timeout, CORS), what it bounds (metadata, choices, batches, error excerpts), what it shows
(/healthz without paths, /readyz, /metrics, request ids, JSON logs) and that a stored
value never breaks a read."""

from __future__ import annotations

import asyncio
import json
import logging
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from modeltriage import HashingEncoder, Router, load_intents
from modeltriage.cli.main import main
from modeltriage.http.app import create_app
from modeltriage.http.body_guard import BodyGuard
from modeltriage.http.observe import JsonFormatter, RequestObserver, json_logging, request_id
from modeltriage.log.memory import MemoryStore
from modeltriage.log.sqlite import SQLiteStore

from .conftest import ROUTER_YAML, TEST_KEYS, TINY_INTENTS, Serve, write_intents

ASK = {"text": "when do you open on sunday"}


@pytest.fixture
def logged(tiny_dir: Path) -> Iterator[Router]:
    with Router.in_memory(
        load_intents(tiny_dir), HashingEncoder(), exact_numpy=True, log=MemoryStore()
    ) as router:
        yield router


@pytest.fixture
def client(logged: Router, serve: Serve) -> TestClient:
    return serve(logged)


# --- content type, body cap, timeout, CORS ----------------------------------------------


@pytest.mark.parametrize(
    "headers",
    [
        {"content-type": "text/plain"},
        {"content-type": "application/x-www-form-urlencoded"},
        {"content-type": "multipart/form-data; boundary=x"},
        {},
    ],
)
def test_a_body_that_is_not_json_is_415(client: TestClient, headers: dict[str, str]) -> None:
    r = client.post("/route", content=json.dumps(ASK).encode(), headers=headers)
    assert r.status_code == 415 and "application/json" in r.json()["detail"]


def test_json_content_types_pass(client: TestClient) -> None:
    for kind in ("application/json", "application/json; charset=utf-8", "Application/JSON"):
        r = client.post("/route", content=json.dumps(ASK), headers={"content-type": kind})
        assert r.status_code == 200, kind
    # No body and no content type: a mark with the default cooldown.
    assert client.post("/health/models/small-a/unhealthy").status_code == 200


def small_cap(tiny_dir: Path, cap: int = 2048, timeout_s: float = 30.0) -> Router:
    yaml = ROUTER_YAML + f"limits: {{max_body_bytes: {cap}, body_timeout_s: {timeout_s}}}\n"
    directory = write_intents(tiny_dir.parent / f"capped-{cap}", TINY_INTENTS, yaml)
    return Router.in_memory(load_intents(directory), HashingEncoder(), exact_numpy=True)


def test_the_body_cap_holds_for_content_length_and_chunked_bodies(
    tiny_dir: Path, serve: Serve
) -> None:
    client = serve(small_cap(tiny_dir))
    big = json.dumps({"text": "a" * 4000}).encode()
    r = client.post("/route", content=big, headers={"content-type": "application/json"})
    assert r.status_code == 413 and "limit of 2048" in r.json()["detail"]
    sent: list[int] = []

    def chunks() -> Iterator[bytes]:  # no Content-Length: Transfer-Encoding: chunked
        for i in range(0, len(big), 512):
            sent.append(i)
            yield big[i : i + 512]

    r = client.post("/route", content=chunks(), headers={"content-type": "application/json"})
    assert r.status_code == 413 and "over the limit of 2048" in r.json()["detail"]
    small = json.dumps(ASK).encode()
    r = client.post(
        "/route", content=iter([small[:5], small[5:]]), headers={"content-type": "application/json"}
    )
    assert r.status_code == 200


def run_guard(router: Router, messages: list[dict[str, Any] | float]) -> list[dict[str, Any]]:
    """Drive BodyGuard directly: a number in ``messages`` is a pause of that many seconds."""
    app = create_app(router=router)
    app.state.router = router
    reached: list[bytes] = []

    async def endpoint(scope: Any, receive: Any, send: Any) -> None:
        reached.append((await receive())["body"])
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})

    guard = BodyGuard(endpoint)
    sent: list[dict[str, Any]] = []
    queue = list(messages)

    async def receive() -> dict[str, Any]:
        while queue and isinstance(queue[0], float):
            await asyncio.sleep(queue.pop(0))  # type: ignore[arg-type]
        if not queue:
            await asyncio.sleep(3600)
        message = queue.pop(0)
        assert isinstance(message, dict)
        return message

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = {
        "type": "http",
        "method": "POST",
        "path": "/route",
        "headers": [(b"content-type", b"application/json"), (b"transfer-encoding", b"chunked")],
        "app": app,
    }
    asyncio.run(guard(scope, receive, send))
    if reached:
        sent.append({"type": "reached", "body": reached[0]})
    return sent


def test_a_slow_body_gets_a_408(tiny_dir: Path) -> None:
    router = small_cap(tiny_dir, timeout_s=0.2)
    sent = run_guard(router, [{"type": "http.request", "body": b'{"te', "more_body": True}, 0.5])
    assert sent[0]["status"] == 408 and (b"connection", b"close") in sent[0]["headers"]
    assert b"0.2s" in sent[1]["body"]
    body = b'{"text": "hi"}'
    sent = run_guard(
        router,
        [
            {"type": "http.request", "body": body[:4], "more_body": True},
            0.05,
            {"type": "http.request", "body": body[4:], "more_body": False},
        ],
    )
    assert sent[-1] == {"type": "reached", "body": body}


def test_a_client_that_leaves_mid_body_reaches_nothing(tiny_dir: Path) -> None:
    router = small_cap(tiny_dir)
    sent = run_guard(
        router,
        [{"type": "http.request", "body": b"{", "more_body": True}, {"type": "http.disconnect"}],
    )
    assert sent == []


def test_cors_is_off_by_default_and_an_allowlist_when_asked(logged: Router) -> None:
    preflight = {
        "origin": "https://app.example",
        "access-control-request-method": "POST",
        "access-control-request-headers": "authorization, content-type",
    }
    with TestClient(create_app(router=logged, keys=TEST_KEYS)) as off:
        r = off.options("/route", headers=preflight)
        assert "access-control-allow-origin" not in r.headers
        r = off.post("/route", json=ASK, headers={"origin": "https://app.example"})
        assert "access-control-allow-origin" not in r.headers
    app = create_app(router=logged, keys=TEST_KEYS, cors_origins=["https://app.example"])
    with TestClient(app) as on:
        r = on.options("/route", headers=preflight)
        assert r.status_code == 200
        assert r.headers["access-control-allow-origin"] == "https://app.example"
        r = on.options("/route", headers={**preflight, "origin": "https://evil.example"})
        assert r.status_code == 400 and "access-control-allow-origin" not in r.headers
        r = on.post("/route", json=ASK, headers={"origin": "https://app.example"})
        assert r.headers["access-control-allow-origin"] == "https://app.example"


# --- bounds --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "body", "where"),
    [
        ("/route", {**ASK, "metadata": {f"k{i}": i for i in range(33)}}, "metadata"),
        ("/route", {**ASK, "metadata": {"t": "é" * 129}}, "metadata"),
        ("/route", {**ASK, "metadata": {"k" * 65: 1}}, "metadata"),
        ("/route", {**ASK, "metadata": {"t": {"nested": 1}}}, "metadata"),
        (
            "/escalate",
            {"answer": "A", "model": "small-a", "choices": [f"c{i}" for i in range(27)]},
            "choices",
        ),
        ("/escalate", {"answer": "A", "model": "small-a", "choices": ["x" * 65]}, "choices"),
        (
            "/escalate",
            {"answer": "A", "model": "small-a", "choices": {"A": "x" * 1001}},
            "choices",
        ),
        ("/escalate", {"answer": "A", "model": "m" * 201}, "model"),
        ("/feedback", {"decision_id": "d", "quality": 1, "model": "m" * 201}, "model"),
        ("/feedback", {"decision_id": "d" * 101, "quality": 1}, "decision_id"),
    ],
)
def test_bounded_fields_are_422_naming_the_field(
    client: TestClient, path: str, body: dict[str, Any], where: str
) -> None:
    r = client.post(path, json=body)
    assert r.status_code == 422, r.text
    assert any(where in problem["loc"] for problem in r.json()["detail"]), r.text


def test_the_bounds_themselves_pass(client: TestClient) -> None:
    metadata = {f"k{i}": "é" * 128 for i in range(32)}
    assert client.post("/route", json={**ASK, "metadata": metadata}).status_code == 200
    choices = {chr(65 + i): "x" * 1000 for i in range(26)}
    r = client.post("/escalate", json={"answer": "A", "model": "small-a", "choices": choices})
    assert r.status_code == 200


def test_a_batch_has_a_byte_budget(tiny_dir: Path, serve: Serve) -> None:
    yaml = ROUTER_YAML + "limits: {max_batch_bytes: 1000}\n"
    directory = write_intents(tiny_dir.parent / "budget", TINY_INTENTS, yaml)
    client = serve(Router.in_memory(load_intents(directory), HashingEncoder(), exact_numpy=True))
    r = client.post("/route/batch", json={"texts": ["a" * 600, "b" * 600]})
    assert r.status_code == 413 and "limits.max_batch_bytes" in r.json()["detail"]
    assert client.post("/route/batch", json={"texts": ["a" * 400, "b" * 400]}).status_code == 200


def test_a_huge_unknown_field_is_not_echoed(client: TestClient) -> None:
    r = client.post("/route", json={**ASK, "junk": "x" * 5_000_000})
    assert r.status_code == 422 and len(r.content) < 2000
    assert r.json()["detail"][0]["loc"] == ["body", "junk"]


# --- /healthz, /readyz, /metrics, request ids, JSON logs -----------------------------------


def test_healthz_shows_no_path(tmp_path: Path, tiny_dir: Path, serve: Serve) -> None:
    path = tmp_path / "secret-dir" / "log.db"
    with Router.in_memory(
        load_intents(tiny_dir), HashingEncoder(), exact_numpy=True, log=SQLiteStore(path)
    ) as router:
        client = serve(router)
        r = client.get("/healthz")
        assert r.json()["log"]["store"] == "sqlite" and "secret-dir" not in r.text
        assert client.get("/readyz").json() == {"ready": True, "problems": []}


def test_readyz_is_503_when_the_log_takes_no_writes(logged: Router, serve: Serve) -> None:
    client = serve(logged)
    assert client.get("/readyz").status_code == 200
    assert logged.logger is not None
    logged.logger.store.close()
    r = client.get("/readyz")
    assert r.status_code == 503 and r.json() == {
        "ready": False,
        "problems": ["the decision log is not writable"],
    }
    assert client.get("/healthz").status_code == 200  # liveness stays cheap and up


def test_a_locked_log_is_a_503_without_the_path(
    tmp_path: Path, tiny_dir: Path, serve: Serve
) -> None:
    path = tmp_path / "secret-dir" / "log.db"
    store = SQLiteStore(path, busy_timeout_s=0.1)
    with Router.in_memory(
        load_intents(tiny_dir), HashingEncoder(), exact_numpy=True, log=store
    ) as router:
        client = serve(router)
        decision = client.post("/route", json=ASK).json()
        assert router.logger is not None and router.logger.flush(5)
        locker = sqlite3.connect(path, isolation_level=None)
        locker.execute("BEGIN EXCLUSIVE")
        try:
            r = client.post("/feedback", json={"decision_id": decision["id"], "quality": 1})
            assert r.status_code == 503 and "secret-dir" not in r.text, r.text
            assert r.json()["detail"] == "the decision log is unavailable; try again later"
            assert client.get("/readyz").status_code == 503
        finally:
            locker.execute("ROLLBACK")
            locker.close()


def metric(text: str, name: str) -> float:
    found = [line for line in text.splitlines() if line.startswith(name)]
    assert found, name
    return float(found[0].rsplit(" ", 1)[1])


def test_metrics(client: TestClient, logged: Router) -> None:
    for _ in range(3):
        assert client.post("/route", json=ASK).status_code == 200
    client.post("/route/batch", json={"texts": ["refund my broken order", "xyz qqq"]})
    client.post("/route", json={"text": ""})
    assert logged.logger is not None and logged.logger.flush(5)
    r = client.get("/metrics")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/plain")
    text = r.text
    assert (
        metric(
            text, 'modeltriage_http_requests_total{endpoint="/route",method="POST",status="200"}'
        )
        == 3
    )
    assert 'status="422"' in text or 'status="413"' in text
    assert 'modeltriage_http_request_duration_seconds_bucket{endpoint="/route",le="0.005"}' in text
    decisions = [
        line for line in text.splitlines() if line.startswith("modeltriage_decisions_total")
    ]
    assert sum(float(line.rsplit(" ", 1)[1]) for line in decisions) == 5
    assert 'intent="hours"' in text and 'reason="' in text and 'tier="' in text
    assert metric(text, "modeltriage_estimated_spend_usd_total") > 0
    assert "modeltriage_cascade_plans_total" in text
    assert metric(text, "modeltriage_log_queue_depth") == 0
    assert metric(text, "modeltriage_log_written_total") == 5
    assert metric(text, "modeltriage_log_dropped_total") == 0
    assert metric(text, "modeltriage_log_write_errors_total") == 0
    assert f'modeltriage_index_info{{encoder="{logged.manifest.encoder}",version="' in text
    assert metric(text, "modeltriage_reloads_total") == 0
    # The same text three times: one embedding, then two hits of the request cache.
    assert metric(text, "modeltriage_query_cache_hits_total") >= 2
    assert metric(text, "modeltriage_query_cache_misses_total") >= 3


def test_metrics_are_per_app(logged: Router) -> None:
    with TestClient(create_app(router=logged)) as one, TestClient(create_app(router=logged)) as two:
        one.post("/route", json=ASK)
        one.app.state.metrics.reloaded(True)  # type: ignore[attr-defined]
        two.app.state.metrics.reloads.inc()  # type: ignore[attr-defined]
        two.app.state.metrics.reloaded(False)  # type: ignore[attr-defined]
        text_one, text_two = one.get("/metrics").text, two.get("/metrics").text
    assert 'endpoint="/route"' in text_one and 'endpoint="/route"' not in text_two
    assert metric(text_one, "modeltriage_reloads_total") == 1
    assert metric(text_two, "modeltriage_reloads_total") == 1
    assert metric(text_two, "modeltriage_reload_failures_total") == 1


def test_request_ids_are_echoed(client: TestClient) -> None:
    r = client.post("/route", json=ASK, headers={"x-request-id": "abc-123"})
    assert r.headers["x-request-id"] == "abc-123"
    for bad in ("x" * 65, "a b", "<script>"):
        r = client.get("/healthz", headers={"x-request-id": bad})
        assert r.headers["x-request-id"] != bad and len(r.headers["x-request-id"]) == 32
    assert client.post("/route", content=b"{", headers={"content-type": "text/plain"}).headers[
        "x-request-id"
    ]


def test_json_logs_carry_the_request_id(client: TestClient) -> None:
    records: list[logging.LogRecord] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append(record)

    handler = Keep()
    access = logging.getLogger("modeltriage.access")
    access.addHandler(handler)
    access.setLevel(logging.INFO)
    try:
        client.post("/route", json=ASK, headers={"x-request-id": "req-42"})
    finally:
        access.removeHandler(handler)
    assert records
    token = request_id.set("req-42")
    try:
        from modeltriage.http.observe import _RequestIdFilter

        _RequestIdFilter().filter(records[-1])
    finally:
        request_id.reset(token)
    line = json.loads(JsonFormatter().format(records[-1]))
    assert line["request_id"] == "req-42" and line["path"] == "/route"
    assert line["status"] == 200 and line["method"] == "POST" and line["duration_ms"] >= 0
    assert RequestObserver  # the middleware that made it


# --- a stored value never breaks a read ----------------------------------------------------


def test_a_broken_stored_row_reads_with_a_marker(
    tmp_path: Path, tiny_dir: Path, serve: Serve, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "log.db"
    with Router.in_memory(
        load_intents(tiny_dir), HashingEncoder(), exact_numpy=True, log=SQLiteStore(path)
    ) as router:
        client = serve(router)
        first = client.post("/route", json={**ASK, "metadata": {"t": "x"}}).json()["id"]
        second = client.post("/route", json=ASK).json()["id"]
        assert router.logger is not None and router.logger.flush(5)
        raw = sqlite3.connect(path, isolation_level=None)
        # What issue 12 planted through the API (now refused): a lone surrogate in metadata.
        raw.execute(
            "UPDATE decisions SET metadata = ? WHERE decision_id = ?", ('{"t": "x\\ud800"}', first)
        )
        # Bytes that are not UTF-8 and a column that is not JSON, written by another tool.
        raw.execute(
            "UPDATE decisions SET text = CAST(X'6869EDA080FF' AS TEXT), fallbacks = 'oops' "
            "WHERE decision_id = ?",
            (second,),
        )
        raw.close()
        r = client.get(f"/decisions/{first}")
        assert r.status_code == 200, r.text
        logged = r.json()["decision"]
        assert logged["metadata"] == {"t": "x\ufffd"} and logged["repaired"] is True
        r = client.get(f"/decisions/{second}")
        assert r.status_code == 200, r.text
        logged = r.json()["decision"]
        assert logged["text"].startswith("hi\ufffd") and logged["fallbacks"] == []
        assert logged["repaired"] is True
    status = main(["logs", "--intents", str(tiny_dir), "--url", str(path), "--json"])
    out = capsys.readouterr()
    assert status == 0, out.err
    rows = json.loads(out.out)["recent"]
    assert {row["decision_id"]: row["repaired"] for row in rows} == {first: True, second: True}
    assert main(["logs", "--intents", str(tiny_dir), "--url", str(path)]) == 0
    assert "Traceback" not in capsys.readouterr().err


@pytest.mark.real
def test_metrics_and_readyz_through_the_real_encoder(shipped_router: Router) -> None:
    with TestClient(create_app(router=shipped_router, keys=TEST_KEYS)) as client:
        r = client.post("/route", json={"text": "what are your opening hours on sunday?"})
        assert r.status_code == 200
        intent = r.json()["intent"]
        text = client.get("/metrics").text
        assert f'intent="{intent}"' in text
        assert f'version="{shipped_router.manifest.version}"' in text
        assert client.get("/readyz").json()["ready"] is True
        assert (
            client.post("/route", content=b"x", headers={"content-type": "text/plain"}).status_code
            == 415
        )


def test_json_logging_writes_one_object_a_line(capsys: pytest.CaptureFixture[str]) -> None:
    root = logging.getLogger()
    saved = (root.handlers[:], root.level)
    access = logging.getLogger("uvicorn.access")
    try:
        json_logging()
        token = request_id.set("rid-7")
        try:
            logging.getLogger("modeltriage.test").warning("hello %s", "there")
        finally:
            request_id.reset(token)
    finally:
        root.handlers[:], level = saved
        root.setLevel(level)
        access.disabled = False
    line = json.loads(capsys.readouterr().err.strip().splitlines()[-1])
    assert line["message"] == "hello there" and line["request_id"] == "rid-7"
    assert line["level"] == "warning" and line["logger"] == "modeltriage.test"
