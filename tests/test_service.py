"""The HTTP service through FastAPI's TestClient (lifespan included)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from modeltriage import HashingEncoder, Router
from modeltriage.service import create_app


@pytest.fixture
def client(fake_router: Router) -> Iterator[TestClient]:
    with TestClient(create_app(router=fake_router)) as c:
        yield c


@pytest.fixture(scope="module")
def real_client(shipped_router: Router) -> Iterator[TestClient]:
    with TestClient(create_app(router=shipped_router)) as c:
        yield c


def test_route(client: TestClient) -> None:
    r = client.post("/route", json={"text": "when do you open on sunday"})
    assert r.status_code == 200
    body = r.json()
    assert body["intent"] == "hours" and body["model"] == "small-a"
    assert set(body) >= {
        "id",
        "intent",
        "difficulty",
        "tier",
        "model",
        "fallbacks",
        "confidence",
        "margin",
        "cascaded",
        "reason",
        "estimated_cost_usd",
        "index_version",
        "latency_ms",
        "neighbours",
    }
    assert body["neighbours"] == []


def test_route_explain(client: TestClient) -> None:
    r = client.post("/route", json={"text": "when do you open on sunday", "explain": True})
    assert r.json()["neighbours"][0]["intent"] == "hours"


def test_batch(client: TestClient) -> None:
    r = client.post(
        "/route/batch", json={"texts": ["refund my purchase please", "what are your opening hours"]}
    )
    assert r.status_code == 200
    assert [d["intent"] for d in r.json()["decisions"]] == ["refund", "hours"]


def test_healthz_and_docs(client: TestClient, fake_router: Router) -> None:
    health = client.get("/healthz").json()
    assert health["status"] == "ok" and health["index_version"] == fake_router.manifest.version
    assert client.get("/docs").status_code == 200
    assert "/route" in client.get("/openapi.json").json()["paths"]


@pytest.mark.parametrize(
    ("kwargs", "status", "fragment"),
    [
        ({"json": {"text": ""}}, 422, "text is empty"),
        ({"json": {"text": "  \n "}}, 422, "text is empty"),
        ({"json": {"text": "x" * 40_000}}, 413, "over the limit"),
        ({"json": {"text": 42}}, 422, "valid string"),
        ({"json": {"text": ["a"]}}, 422, "valid string"),
        ({"json": {"text": "hi", "explain": "yes"}}, 422, "valid boolean"),
        ({"json": {}}, 422, "Field required"),
        ({"json": {"text": "hi", "model": "x"}}, 422, "Extra inputs"),
        (
            {
                "content": b'{"text": "bad \\udc80"}',
                "headers": {"content-type": "application/json"},
            },
            422,
            "not valid Unicode",
        ),
        (
            {"content": b'{"text": "caf\xe9"}', "headers": {"content-type": "application/json"}},
            400,
            "not valid UTF-8",
        ),
        ({"content": b"not json", "headers": {"content-type": "application/json"}}, 422, "JSON"),
        (
            {"content": b"x" * 60_000_000, "headers": {"content-type": "application/json"}},
            413,
            "over the limit",
        ),
    ],
)
def test_bad_requests_are_4xx_with_a_message(
    client: TestClient, kwargs: dict[str, object], status: int, fragment: str
) -> None:
    r = client.post("/route", **kwargs)  # type: ignore[arg-type]
    assert r.status_code == status, r.text
    assert fragment in r.text


def test_bad_batches(client: TestClient) -> None:
    assert client.post("/route/batch", json={"texts": []}).status_code == 422
    r = client.post("/route/batch", json={"texts": ["ok", ""]})
    assert r.status_code == 422 and "texts[1]" in r.text
    r = client.post("/route/batch", json={"texts": ["a"] * 300})
    assert r.status_code == 413 and "max_batch" in r.text


def test_app_loads_its_router_in_the_lifespan(tiny_dir: Path) -> None:
    from modeltriage import build_index

    encoder = HashingEncoder()
    build_index(tiny_dir, encoder=encoder)
    # No router passed: the lifespan loads it from disk; the real encoder would be used by
    # default, so check only that a missing index fails at startup with a clear error.
    app = create_app(tiny_dir / "nowhere")
    with pytest.raises(Exception, match="intents directory not found"), TestClient(app):
        pass


@pytest.mark.real
def test_real_route_over_http(real_client: TestClient) -> None:
    r = real_client.post("/route", json={"text": "do you ship to canada and how long does it take"})
    assert r.status_code == 200
    assert r.json()["intent"] == "shipping_options"
    assert real_client.get("/healthz").json()["exemplars"] >= 20 * 15
