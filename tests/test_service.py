"""The HTTP service through FastAPI's TestClient (lifespan included)."""

from __future__ import annotations

from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from modeltriage import HashingEncoder, Router
from modeltriage.http.app import create_app

from .conftest import Serve


@pytest.fixture
def client(fake_router: Router, serve: Serve) -> TestClient:
    return serve(fake_router)


@pytest.fixture
def real_client(shipped_router: Router, serve: Serve) -> TestClient:
    return serve(shipped_router)


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


# --- POST /escalate ---------------------------------------------------------------------

HEDGE = "I'm not sure, maybe nine?"
SUNDAY = "when do you open on sunday"  # routes to small-a, fallbacks small-b, mid-a, big-a
CODE = "debug this javascript promise that never resolves"  # routes to coder (mid)
REFUND = "refund my purchase please"  # routes to mid-a
IAN_DENNIS = {"A": "Ian", "B": "Dennis"}


@pytest.mark.parametrize(
    ("body", "to_model", "reasons"),
    [
        ({"answer": "We open at nine.", "model": "small-a"}, None, []),
        ({"answer": HEDGE, "model": "small-a"}, "mid-a", ["hedge"]),
        ({"answer": HEDGE, "model": "mid-a"}, "big-a", ["hedge"]),
        ({"answer": HEDGE, "model": "coder"}, "big-a", ["hedge"]),
        ({"answer": HEDGE, "model": "big-a"}, None, ["hedge"]),
        ({"answer": "", "model": "small-a"}, "mid-a", ["empty"]),
        ({"answer": "B", "model": "small-a", "confidence": 0.2}, "mid-a", ["low_self_confidence"]),
        ({"answer": "B", "model": "small-a", "confidence": 1}, None, []),
        ({"answer": "B", "model": "small-a", "logprobs": [-0.1, -4]}, "mid-a", ["low_logprob"]),
        ({"answer": "B", "model": "small-a", "second_answer": "(C)"}, "mid-a", ["disagreement"]),
        ({"answer": "B", "model": "small-a", "second_answer": "b) Dennis"}, None, []),
        ({"answer": "Dennis", "model": "small-a", "choices": IAN_DENNIS}, None, []),
        ({"answer": "Rober", "model": "small-a", "choices": ["A", "B"]}, "mid-a", ["no_choice"]),
        ({"answer": "ok.", "model": "small-a", "finish_reason": "length"}, "mid-a", ["truncated"]),
        # With the request text: along its routed fallbacks, from the model that answered.
        ({"answer": HEDGE, "text": SUNDAY}, "mid-a", ["hedge"]),
        ({"answer": HEDGE, "text": SUNDAY, "model": "small-b"}, "mid-a", ["hedge"]),
        ({"answer": HEDGE, "text": SUNDAY, "model": "mid-a"}, "big-a", ["hedge"]),
        ({"answer": HEDGE, "text": SUNDAY, "model": "big-a"}, None, ["hedge"]),
        ({"answer": HEDGE, "text": CODE}, "big-a", ["hedge"]),
        # The router chose mid-a but small-a answered: mid-a is the next step up.
        ({"answer": HEDGE, "text": REFUND, "model": "small-a"}, "mid-a", ["hedge"]),
        ({"answer": "We open at nine.", "text": SUNDAY}, None, []),
    ],
)
def test_escalate(
    client: TestClient, body: dict[str, object], to_model: str | None, reasons: list[str]
) -> None:
    r = client.post("/escalate", json=body)
    assert r.status_code == 200, r.text
    answer = r.json()
    assert answer["escalate"] is bool(reasons)
    assert answer["to_model"] == to_model
    assert answer["reasons"] == reasons
    assert answer["detail"]
    assert answer["decision_id"] is None


def test_escalate_echoes_the_decision_id(client: TestClient) -> None:
    r = client.post("/escalate", json={"answer": HEDGE, "model": "small-a", "decision_id": "d-1"})
    assert r.json()["decision_id"] == "d-1"


def test_escalate_does_not_log_a_second_decision(tiny_dir: Path, serve: Serve) -> None:
    from modeltriage import load_intents
    from modeltriage.log.memory import MemoryStore

    store = MemoryStore()
    router = Router.in_memory(load_intents(tiny_dir), HashingEncoder(), exact_numpy=True, log=store)
    c = serve(router)
    text = "when do you open on sunday"
    routed = c.post("/route", json={"text": text}).json()
    r = c.post("/escalate", json={"answer": HEDGE, "text": text, "decision_id": routed["id"]})
    assert r.json()["escalate"] and r.json()["decision_id"] == routed["id"]
    assert router.logger is not None and router.logger.flush(timeout=5)
    assert [e.decision_id for e in store.decisions()] == [routed["id"]]
    router.close()


@pytest.mark.parametrize(
    ("body", "status", "fragment"),
    [
        ({"answer": "B", "model": "gpt-9"}, 422, "unknown model 'gpt-9'"),
        ({"answer": "We open at nine.", "model": "gpt-9"}, 422, "unknown model"),
        ({"answer": "B"}, 422, "give `model`"),
        ({"model": "small-a"}, 422, "Field required"),
        ({"answer": 3, "model": "small-a"}, 422, "valid string"),
        ({"answer": "B", "model": "small-a", "confidence": 1.5}, 422, "less than or equal to 1"),
        ({"answer": "B", "model": "small-a", "confidence": "high"}, 422, "confidence"),
        ({"answer": "B", "model": "small-a", "confidence": True}, 422, "confidence"),
        ({"answer": "B", "model": "small-a", "logprobs": [-1, 0.5]}, 422, "logprobs"),
        ({"answer": "B", "model": "small-a", "logprobs": "-1"}, 422, "logprobs"),
        ({"answer": "B", "model": "small-a", "choices": "AB"}, 422, "choices"),
        ({"answer": "B", "text": "  "}, 422, "text is empty"),
        ({"answer": "B", "text": "x" * 40_000}, 413, "max_text_bytes"),
        ({"answer": "x" * 300_000, "model": "small-a"}, 413, "max_answer_bytes"),
        ({"answer": "B", "model": "small-a", "second_answer": "x" * 300_000}, 413, "second_answer"),
        ({"answer": "B", "model": "small-a", "decision_id": ""}, 422, "decision_id"),
        ({"answer": "B", "model": "small-a", "temperature": 0}, 422, "Extra inputs"),
    ],
)
def test_escalate_bad_input_is_4xx(
    client: TestClient, body: dict[str, object], status: int, fragment: str
) -> None:
    r = client.post("/escalate", json=body)
    assert r.status_code == status, r.text
    assert fragment in r.text


def test_escalate_rejects_lone_surrogates(client: TestClient) -> None:
    r = client.post(
        "/escalate",
        content=b'{"answer": "bad \\udc80", "model": "small-a"}',
        headers={"content-type": "application/json"},
    )
    assert r.status_code == 422 and "not valid Unicode" in r.text


def test_escalate_is_documented(client: TestClient) -> None:
    paths = client.get("/openapi.json").json()["paths"]
    assert "/escalate" in paths
