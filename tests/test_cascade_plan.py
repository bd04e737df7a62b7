"""Cascade plans in decisions, decisions looked up by id, failovers and answer checks
recorded in the log: through the Router and the service, with the fake encoder and with
the real encoder on the shipped intents."""

from __future__ import annotations

import shutil
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import yaml
from fastapi.testclient import TestClient

from modeltriage import HashingEncoder, RouteOptions, Router, load_intents
from modeltriage.core.encoders import SentenceTransformerEncoder
from modeltriage.errors import LogStoreError, UnknownDecisionError
from modeltriage.log.memory import MemoryStore

from .conftest import ROUTER_YAML, SHIPPED_INTENTS, TINY_INTENTS, Serve

SUNDAY = "when do you open on sunday?"  # hours (easy -> small-a), a moderate margin
# aggregation max: margins are cosine gaps. Below 0.02: flagship now; below 0.99: a plan.
PLAN_YAML = ROUTER_YAML.replace("margin: 0.02", "margin: 0.02\n  cascade_margin: 0.99")


@pytest.fixture
def store() -> MemoryStore:
    return MemoryStore()


@pytest.fixture
def router(make_intents: Callable[..., Path], store: MemoryStore) -> Iterator[Router]:
    directory = make_intents(TINY_INTENTS, PLAN_YAML)
    with Router.in_memory(
        load_intents(directory), HashingEncoder(), exact_numpy=True, log=store
    ) as routed:
        yield routed


@pytest.fixture
def client(router: Router, serve: Serve) -> TestClient:
    return serve(router)


# --- library ----------------------------------------------------------------------------


def test_a_moderate_margin_plans_a_cascade_to_the_flagship(router: Router) -> None:
    decision = router.route(SUNDAY)
    assert (decision.intent, decision.model, decision.reason) == ("hours", "small-a", "cascade")
    assert decision.cascaded is False  # the cheap model answers first
    plan = decision.cascade
    assert plan is not None
    assert (plan.escalate_to, plan.tier, plan.trigger) == ("big-a", "flagship", "margin")
    assert "try small-a first, escalate to big-a" in decision.explanation


def test_a_logged_decision_is_found_by_id(router: Router) -> None:
    decision = router.route(SUNDAY)
    logged = router.decision(decision.id)
    assert (logged.model, list(logged.fallbacks), logged.cascade_to) == (
        "small-a",
        decision.fallbacks,
        "big-a",
    )
    with pytest.raises(UnknownDecisionError):
        router.decision("no-such-id")


def test_lookup_needs_the_log(make_intents: Callable[..., Path]) -> None:
    directory = make_intents(TINY_INTENTS, PLAN_YAML)
    unlogged = Router.in_memory(load_intents(directory), HashingEncoder(), exact_numpy=True)
    decision = unlogged.route(SUNDAY)
    with pytest.raises(LogStoreError, match=r"set log\.url"):
        unlogged.decision(decision.id)
    with pytest.raises(LogStoreError, match="looked up by id"):
        unlogged.failover(decision.id, "small-a")
    # with the model given, an id is only echoed: no lookup, no error
    assert unlogged.escalate("I'm not sure", model="small-a", decision_id="x").to_model == "mid-a"


def test_escalating_by_id_follows_the_plan_and_is_recorded(
    router: Router, store: MemoryStore
) -> None:
    decision = router.route(SUNDAY)
    # the plan names the flagship, not the next tier (mid-a) of the chain
    result = router.escalate("I'm not sure, it depends.", decision_id=decision.id)
    assert (result.escalate, result.to_model, result.reasons) == (True, "big-a", ["hedge"])
    kept = router.escalate("We open at 10 on Sundays.", decision_id=decision.id)
    assert (kept.escalate, kept.to_model) == (False, None)
    router.logger.flush()  # type: ignore[union-attr]
    events = store.events(decision_id=decision.id)
    assert [(e.kind, e.model, e.to_model) for e in events] == [
        ("escalation", "small-a", "big-a"),
        ("escalation", "small-a", None),
    ]
    assert "hedge" in events[0].detail and "keep the answer" in events[1].detail
    with pytest.raises(UnknownDecisionError):
        router.escalate("I'm not sure", decision_id="no-such-id")


def test_escalating_a_decision_without_a_plan_follows_its_chain(router: Router) -> None:
    no_plan = router.route(
        SUNDAY, RouteOptions(max_cost_usd=0.001)
    )  # only small models fit: no plan
    assert no_plan.cascade is None
    result = router.escalate("I don't know", decision_id=no_plan.id)
    assert result.to_model == "mid-a"  # the first stronger model of its fallbacks


def test_a_model_name_is_not_mistaken_for_a_decision_id(router: Router) -> None:
    from modeltriage import InputError

    with pytest.raises(InputError, match="is a model name"):
        router.failover("small-a", "small-a")
    assert router.failover(["small-a", "big-a"], "small-a").model == "big-a"


def test_failover_by_id_is_recorded(router: Router, store: MemoryStore) -> None:
    decision = router.route(SUNDAY)
    assert router.failover(decision.id, "small-a").model == "small-b"
    assert router.failover(decision, ["small-a", "small-b"]).model == "mid-a"
    assert router.failover(["mid-a", "big-a"], "mid-a").model == "big-a"
    router.logger.flush()  # type: ignore[union-attr]
    events = [(e.kind, e.model, e.to_model, e.decision_id) for e in store.events()]
    assert events == [
        ("failover", "small-a", "small-b", decision.id),
        ("failover", "small-b", "mid-a", decision.id),
        ("failover", "mid-a", "big-a", None),
    ]
    assert "failed: small-a, small-b" in store.events()[1].detail


# --- service ----------------------------------------------------------------------------


def test_service_routes_with_a_plan_and_acts_on_the_id(client: TestClient) -> None:
    decision = client.post("/route", json={"text": SUNDAY}).json()
    assert decision["reason"] == "cascade"
    assert decision["cascade"]["escalate_to"] == "big-a"
    decision_id = decision["id"]

    escalated = client.post(
        "/escalate", json={"answer": "I am not sure.", "decision_id": decision_id}
    ).json()
    assert (escalated["escalate"], escalated["to_model"]) == (True, "big-a")
    assert escalated["decision_id"] == decision_id

    nxt = client.post("/next-model", json={"decision_id": decision_id, "failed": ["small-a"]})
    assert nxt.status_code == 200, nxt.text
    assert nxt.json()["model"] == "small-b"

    logged = client.get(f"/decisions/{decision_id}")
    assert logged.status_code == 200, logged.text
    body = logged.json()
    logged_decision = body["decision"]
    assert (logged_decision["model"], logged_decision["cascade_to"]) == ("small-a", "big-a")
    assert logged_decision["fallbacks"] == decision["fallbacks"]
    assert logged_decision["text"] == SUNDAY
    assert [e["kind"] for e in body["events"]] == ["escalation", "failover"]
    client.post("/feedback", json={"decision_id": decision_id, "quality": 1})
    assert [f["quality"] for f in client.get(f"/decisions/{decision_id}").json()["feedback"]] == [
        1.0
    ]


@pytest.mark.parametrize(
    ("method", "path", "body", "status", "fragment"),
    [
        ("get", "/decisions/nope", None, 404, "nope"),
        ("post", "/escalate", {"answer": "x", "decision_id": "nope"}, 404, "nope"),
        ("post", "/next-model", {"decision_id": "nope", "failed": ["small-a"]}, 404, "nope"),
        ("post", "/next-model", {"failed": ["small-a"]}, 422, "decision_id"),
        (
            "post",
            "/next-model",
            {"decision_id": "x", "fallbacks": ["big-a"], "failed": ["small-a"]},
            422,
            "decision_id",
        ),
    ],
)
def test_service_errors_name_the_problem(
    client: TestClient,
    method: str,
    path: str,
    body: dict[str, object] | None,
    status: int,
    fragment: str,
) -> None:
    response = client.request(method.upper(), path, json=body)
    assert response.status_code == status, response.text
    assert fragment in response.json()["detail"]


def test_lookup_without_a_log_is_a_clear_503(
    make_intents: Callable[..., Path], serve: Serve
) -> None:
    directory = make_intents(TINY_INTENTS, PLAN_YAML)
    router = Router.in_memory(load_intents(directory), HashingEncoder(), exact_numpy=True)
    client = serve(router)
    response = client.get("/decisions/anything")
    assert response.status_code == 503
    assert "decision logging is off" in response.json()["detail"]


# --- real encoder, real FAISS index, shipped intents -------------------------------------


@pytest.mark.real
def test_shipped_intents_plan_cascades_with_the_real_encoder(
    tmp_path: Path, real_encoder: SentenceTransformerEncoder
) -> None:
    target = tmp_path / "intents"
    shutil.copytree(
        SHIPPED_INTENTS, target, ignore=shutil.ignore_patterns(".index", ".log", ".log-spool.jsonl")
    )
    config_path = target / "router.yaml"
    config = yaml.safe_load(config_path.read_text(encoding="utf-8"))
    config["thresholds"].update({"margin": 0.2, "cascade_margin": 0.95})
    config_path.write_text(yaml.safe_dump(config), encoding="utf-8")
    with Router.load(target, encoder=real_encoder, build_if_needed=True, log="memory:") as router:
        # Margins with the adapter on (torch MiniLM, 2026-12-07): 1.0, 0.70, 0.83, 0.19.
        texts = [
            "what are your opening hours on sunday?",
            "my router keeps dropping and I want to cancel my subscription",
            "the app crashes when I try to pay, can I get a refund",
            "I was charged twice, is my warranty still valid?",
        ]
        decisions = [router.route(t) for t in texts]
        reasons = {d.reason for d in decisions}
        assert "cascade" in reasons, [(d.reason, d.margin) for d in decisions]
        for d in decisions:
            assert d.margin is not None
            if d.reason == "cascade":
                assert d.cascade is not None
                assert 0.2 <= d.margin < 0.95
                assert d.cascade.tier == router.config.flagship_tier
                assert router.decision(d.id).cascade_to == d.cascade.escalate_to
            elif d.reason == "low_margin":
                assert d.margin < 0.2 and d.cascade is None
        planned = next(d for d in decisions if d.cascade is not None)
        result = router.escalate("Sorry, I cannot help with that.", decision_id=planned.id)
        assert result.escalate and result.to_model == planned.cascade.escalate_to  # type: ignore[union-attr]
