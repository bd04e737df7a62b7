"""Failover, model health, budgets and pipeline steps through the Router and the service."""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from modeltriage import ConfigError, HashingEncoder, InputError, RouteOptions, Router, load_intents

from .conftest import ROUTER_YAML, TINY_INTENTS, Serve

SUNDAY = "when do you open on sunday"  # small-a; fallbacks small-b, mid-a, big-a
REFUND = "refund my purchase please"  # mid-a

STEPS_YAML = (
    ROUTER_YAML.replace(
        "input_usd_per_mtok: 0.10, output_usd_per_mtok: 0.40}",
        "input_usd_per_mtok: 0.10, output_usd_per_mtok: 0.40, typical_latency_ms: 300}",
    ).replace(
        "input_usd_per_mtok: 0.20, output_usd_per_mtok: 0.80}",
        "input_usd_per_mtok: 0.20, output_usd_per_mtok: 0.80, typical_latency_ms: 200}",
    )
    + """\
health:
  cooldown_s: 30
steps:
  query_rewrite: {tier: small}
  synthesis: {intent: refund}
"""
)


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def router(make_intents: Callable[..., Path], clock: FakeClock) -> Router:
    directory = make_intents(TINY_INTENTS, STEPS_YAML)
    return Router.in_memory(
        load_intents(directory), HashingEncoder(), exact_numpy=True, clock=clock
    )


@pytest.fixture
def client(router: Router, serve: Serve) -> TestClient:
    return serve(router)


# --- library ----------------------------------------------------------------------------


def test_next_model_from_a_decision(router: Router) -> None:
    decision = router.route(SUNDAY)
    assert [decision.model, *decision.fallbacks] == ["small-a", "small-b", "mid-a", "big-a"]
    assert router.failover(decision, "small-a").model == "small-b"
    assert router.failover(decision, ["small-a", "small-b"]).model == "mid-a"
    assert router.failover(decision, ["big-a"]).model is None
    router.mark_unhealthy("small-b")
    assert router.failover(decision, "small-a").model == "mid-a"
    assert router.failovers == 4


def test_unhealthy_models_cool_down_on_the_clock(router: Router, clock: FakeClock) -> None:
    assert router.mark_unhealthy("small-a") == 30  # health.cooldown_s
    router.mark_unhealthy("mid-a", cooldown_s=90)
    clock.now += 10
    assert router.unhealthy_models() == {"mid-a": 80, "small-a": 20}
    decision = router.route(SUNDAY)
    assert (decision.model, decision.fallbacks) == ("small-b", ["big-a"])
    assert "small-a is marked unhealthy" in decision.explanation
    clock.now += 20
    assert router.unhealthy_models() == {"mid-a": 60}
    assert router.route(SUNDAY).model == "small-a"


@pytest.mark.parametrize(
    ("call", "fragment"),
    [
        (lambda r: r.mark_unhealthy("gpt-9"), "unknown model 'gpt-9'"),
        (lambda r: r.mark_unhealthy("small-a", 0), "cooldown_s must be more than 0"),
        (lambda r: r.failover(["small-a"], "gpt-9").model, "failed: unknown model 'gpt-9'"),
        (lambda r: r.failover(["gpt-9"], "small-a").model, "chain: unknown model 'gpt-9'"),
        (lambda r: r.failover([], "small-a").model, "chain is empty"),
        (lambda r: r.failover(["small-a"], []).model, "at least one failed model"),
        (
            lambda r: r.route(SUNDAY, RouteOptions(max_latency_ms=0)),
            "max_latency_ms must be a number",
        ),
        (lambda r: r.route(SUNDAY, RouteOptions(max_cost_usd=-1)), "max_cost_usd must be a number"),
        (
            lambda r: r.route(SUNDAY, RouteOptions(step="nope")),
            "known steps: query_rewrite, synthesis",
        ),
    ],
)
def test_bad_library_input_is_an_input_error(
    router: Router, call: Callable[[Router], object], fragment: str
) -> None:
    with pytest.raises(InputError, match=fragment):
        call(router)


def test_route_with_budget_and_step(router: Router) -> None:
    assert router.route(SUNDAY, RouteOptions(max_latency_ms=250)).model == "small-b"
    over = router.route(SUNDAY, RouteOptions(max_latency_ms=100))
    assert over.reason == "over_budget" and "budget:" in over.explanation
    stepped = router.route(SUNDAY, RouteOptions(step="synthesis"))
    assert (stepped.intent, stepped.model, stepped.reason) == ("refund", "mid-a", "step")
    assert [
        d.reason for d in router.route_batch([SUNDAY, REFUND], RouteOptions(step="query_rewrite"))
    ] == [
        "step",
        "step",
    ]


def test_step_is_logged_in_the_metadata(make_intents: Callable[..., Path]) -> None:
    from modeltriage.log.memory import MemoryStore

    store = MemoryStore()
    directory = make_intents(TINY_INTENTS, STEPS_YAML)
    router = Router.in_memory(load_intents(directory), HashingEncoder(), log=store)
    router.route(SUNDAY, RouteOptions(step="query_rewrite", metadata={"tenant": "acme"}))
    assert router.logger is not None and router.logger.flush(timeout=5)
    assert store.decisions()[0].metadata == {"tenant": "acme", "step": "query_rewrite"}
    router.close()


# line: of the error within ``steps``, which is appended after ROUTER_YAML's lines.
@pytest.mark.parametrize(
    ("steps", "line", "fragment"),
    [
        ("steps:\n  rewrite: {tier: tiny}\n", 2, "unknown tier 'tiny'"),
        ("steps:\n  synthesis:\n    intent: legal\n", 3, "unknown intent 'legal'"),
        ("steps:\n  rewrite: {tier: small, intent: hours}\n", 2, "exactly one of tier or intent"),
        ("steps:\n  rewrite: {model: small-a}\n", 2, "unknown key"),
    ],
)
def test_bad_steps_are_file_line_errors(
    make_intents: Callable[..., Path], steps: str, line: int, fragment: str
) -> None:
    directory = make_intents(TINY_INTENTS, ROUTER_YAML + steps)
    with pytest.raises(ConfigError, match=fragment) as info:
        load_intents(directory)
    where = (directory / "router.yaml", ROUTER_YAML.count("\n") + line)
    assert (info.value.path, info.value.line) == where


# --- service ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "model"),
    [
        ({"model": "small-a", "fallbacks": ["small-b", "mid-a"], "failed": ["small-a"]}, "small-b"),
        ({"model": "small-a", "fallbacks": ["small-b"], "failed": ["small-a", "small-b"]}, None),
        ({"model": "small-a", "failed": ["small-a"], "decision_id": "d-1"}, None),
    ],
)
def test_next_model_endpoint(
    client: TestClient, body: dict[str, object], model: str | None
) -> None:
    r = client.post("/next-model", json=body)
    assert r.status_code == 200, r.text
    assert r.json()["model"] == model and r.json()["reason"]
    assert r.json()["decision_id"] == body.get("decision_id")


def test_unhealthy_endpoints_and_healthz(client: TestClient, clock: FakeClock) -> None:
    r = client.post("/health/models/small-a/unhealthy")
    assert r.status_code == 200 and r.json() == {"model": "small-a", "seconds_left": 30.0}
    client.post("/health/models/mid-a/unhealthy", json={"cooldown_s": 5})
    clock.now += 2
    assert client.get("/health/models").json() == {
        "unhealthy": [
            {"model": "mid-a", "seconds_left": 3.0},
            {"model": "small-a", "seconds_left": 28.0},
        ]
    }
    decision = client.post("/route", json={"text": SUNDAY}).json()
    assert (decision["model"], decision["fallbacks"]) == ("small-b", ["big-a"])
    r = client.post(
        "/next-model",
        json={"model": "small-a", "fallbacks": ["mid-a", "big-a"], "failed": ["small-a"]},
    )
    assert r.json()["model"] == "big-a" and "skipped unhealthy mid-a" in r.json()["reason"]
    health = client.get("/healthz").json()
    assert health["failovers"] == 1 and health["unhealthy_models"] == ["mid-a", "small-a"]


def test_route_budgets_and_steps_over_http(client: TestClient) -> None:
    r = client.post("/route", json={"text": SUNDAY, "max_latency_ms": 250})
    assert r.status_code == 200 and r.json()["model"] == "small-b"
    r = client.post("/route", json={"text": SUNDAY, "max_cost_usd": 1e-9})
    assert r.json()["reason"] == "over_budget"
    r = client.post("/route/batch", json={"texts": [SUNDAY, REFUND], "step": "query_rewrite"})
    assert [d["model"] for d in r.json()["decisions"]] == ["small-a", "small-a"]


@pytest.mark.parametrize(
    ("path", "body", "status", "fragment"),
    [
        ("/route", {"text": SUNDAY, "step": "nope"}, 422, "known steps: query_rewrite, synthesis"),
        ("/route/batch", {"texts": [SUNDAY], "step": "nope"}, 422, "unknown step 'nope'"),
        ("/route", {"text": SUNDAY, "max_latency_ms": 0}, 422, "greater than 0"),
        ("/route", {"text": SUNDAY, "max_cost_usd": "1"}, 422, "max_cost_usd"),
        ("/next-model", {"model": "small-a", "failed": []}, 422, "failed"),
        ("/next-model", {"model": "gpt-9", "failed": ["small-a"]}, 422, "unknown model 'gpt-9'"),
        ("/next-model", {"model": "small-a", "failed": ["x"], "extra": 1}, 422, "Extra inputs"),
        ("/health/models/gpt-9/unhealthy", None, 422, "unknown model 'gpt-9'"),
        ("/health/models/small-a/unhealthy", {"cooldown_s": -1}, 422, "greater than 0"),
    ],
)
def test_bad_failover_input_is_4xx(
    client: TestClient, path: str, body: dict[str, object] | None, status: int, fragment: str
) -> None:
    r = client.post(path, json=body)
    assert r.status_code == status, r.text
    assert fragment in r.text


# --- the real encoder -------------------------------------------------------------------


@pytest.mark.real
def test_real_failover_budget_and_health(shipped_router: Router) -> None:
    decision = shipped_router.route("what are your hours?", log=False)
    assert decision.model == "gemini-1.5-flash"
    assert shipped_router.failover(decision, "gemini-1.5-flash").model == "gpt-4o-mini"
    # o1 (6000 ms) is too slow for 3 s: claude-3-opus serves the flagship tier instead
    text = "my router keeps dropping the connection after the firmware update"
    assert shipped_router.route(text, log=False).model == "o1"
    fast = shipped_router.route(text, RouteOptions(max_latency_ms=3000), log=False)
    assert (fast.model, fast.reason) == ("claude-3-opus", "confident")
    assert "o1 typical latency 6000 ms > max_latency_ms 3000" in fast.explanation
    step = shipped_router.route(text, RouteOptions(step="query_rewrite"), log=False)
    assert (step.model, step.reason) == ("gemini-1.5-flash", "step")
    over = shipped_router.route("what are your hours?", RouteOptions(max_latency_ms=10), log=False)
    assert (over.reason, over.model) == ("over_budget", "gemini-1.5-flash")


# --- multi-turn -------------------------------------------------------------------------


def test_route_messages(router: Router, client: TestClient) -> None:
    from modeltriage import Message

    turns = [
        Message(role="user", content="refund my purchase please"),
        Message(role="assistant", content="Which order?"),
        Message(role="user", content="the blue one"),
    ]
    decision = router.route_messages(turns)
    assert decision.intent == "refund"
    with pytest.raises(InputError, match="no user turn"):
        router.route_messages([Message(role="assistant", content="hi")])
    body = {"messages": [t.model_dump() for t in turns]}
    r = client.post("/route", json=body)
    assert r.status_code == 200 and r.json()["intent"] == "refund"


@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        ({"text": SUNDAY, "messages": [{"role": "user", "content": "hi"}]}, "not both"),
        ({"messages": []}, "messages"),
        ({"messages": [{"role": "robot", "content": "hi"}]}, "role"),
        ({"messages": [{"role": "assistant", "content": "hi"}]}, "no user turn"),
        ({"explain": True}, "Field required"),
    ],
)
def test_bad_messages_are_422(client: TestClient, body: dict[str, object], fragment: str) -> None:
    r = client.post("/route", json=body)
    assert r.status_code == 422, r.text
    assert fragment in r.text


STICKY_YAML = (
    STEPS_YAML
    + """\
conversation:
  sticky: true
  sticky_turns: 2
  max_conversations: 2
  ttl_s: 100
"""
)


@pytest.fixture
def sticky(make_intents: Callable[..., Path], clock: FakeClock) -> Router:
    directory = make_intents(TINY_INTENTS, STICKY_YAML)
    return Router.in_memory(
        load_intents(directory), HashingEncoder(), exact_numpy=True, clock=clock
    )


def test_sticky_conversation_does_not_go_down_tiers(sticky: Router, clock: FakeClock) -> None:
    assert sticky.route(REFUND, RouteOptions(conversation_id="c1")).tier == "mid"
    # the next two turns stay at mid although they alone would go to small
    first = sticky.route(SUNDAY, RouteOptions(conversation_id="c1"))
    assert (first.tier, first.model) == ("mid", "mid-a")
    assert "the conversation stays at tier mid" in first.explanation
    assert sticky.route(SUNDAY, RouteOptions(conversation_id="c1")).tier == "mid"
    assert sticky.route(SUNDAY, RouteOptions(conversation_id="c1")).tier == "small"
    # other conversations and requests without an id are not affected
    assert sticky.route(SUNDAY, RouteOptions(conversation_id="c2")).tier == "small"
    assert sticky.route(SUNDAY).tier == "small"


def test_sticky_state_expires_and_is_bounded(sticky: Router, clock: FakeClock) -> None:
    sticky.route(REFUND, RouteOptions(conversation_id="c1"))
    clock.now += 101
    assert sticky.route(SUNDAY, RouteOptions(conversation_id="c1")).tier == "small"
    sticky.route(REFUND, RouteOptions(conversation_id="a"))
    sticky.route(REFUND, RouteOptions(conversation_id="b"))
    sticky.route(REFUND, RouteOptions(conversation_id="c"))  # evicts "a", the least recent
    assert sticky.route(SUNDAY, RouteOptions(conversation_id="a")).tier == "small"
    assert sticky.route(SUNDAY, RouteOptions(conversation_id="c")).tier == "mid"


def test_not_sticky_by_default(router: Router, client: TestClient) -> None:
    router.route(REFUND, RouteOptions(conversation_id="c1"))
    assert router.route(SUNDAY, RouteOptions(conversation_id="c1")).tier == "small"
    r = client.post("/route", json={"text": SUNDAY, "conversation_id": "c1"})
    assert r.status_code == 200 and r.json()["tier"] == "small"


def test_sticky_over_http(sticky: Router, serve: Serve) -> None:
    c = serve(sticky)
    c.post("/route", json={"text": REFUND, "conversation_id": "c9"})
    r = c.post(
        "/route",
        json={"messages": [{"role": "user", "content": SUNDAY}], "conversation_id": "c9"},
    )
    assert r.json()["tier"] == "mid"


# --- replicas sharing one log share health marks ---------------------------------------


def test_replicas_sharing_a_log_skip_a_model_either_marked(
    make_intents: Callable[..., Path], clock: FakeClock
) -> None:
    from modeltriage.log.memory import MemoryStore

    store = MemoryStore()
    directory = make_intents(
        TINY_INTENTS, STEPS_YAML.replace("  cooldown_s: 30\n", "  cooldown_s: 30\n  refresh_s: 0\n")
    )
    intent_set = load_intents(directory)
    one = Router.in_memory(intent_set, HashingEncoder(), exact_numpy=True, log=store, clock=clock)
    two = Router.in_memory(intent_set, HashingEncoder(), exact_numpy=True, log=store, clock=clock)
    assert two.route(SUNDAY).model == "small-a"
    one.mark_unhealthy("small-a")
    two._health.refresh()  # what its background refresh does every refresh_s
    assert "small-a" in two.unhealthy_models()
    assert 29 < two.unhealthy_models()["small-a"] <= 30
    assert two.route(SUNDAY).model == "small-b"
    one.close()
    two.close()


def test_health_stays_local_when_not_shared(
    make_intents: Callable[..., Path], clock: FakeClock
) -> None:
    from modeltriage.log.memory import MemoryStore

    store = MemoryStore()
    directory = make_intents(
        TINY_INTENTS,
        STEPS_YAML.replace("  cooldown_s: 30\n", "  cooldown_s: 30\n  shared: false\n"),
    )
    intent_set = load_intents(directory)
    one = Router.in_memory(intent_set, HashingEncoder(), exact_numpy=True, log=store, clock=clock)
    one.mark_unhealthy("small-a")
    assert store.unhealthy_until(datetime.now(timezone.utc)) == {}
    one.close()


def test_a_failing_health_store_keeps_the_local_mark() -> None:
    from modeltriage.followup.model_health import ModelHealth

    class Broken:
        url = "broken:"

        def mark_unhealthy(self, model: str, until: datetime) -> None:
            raise OSError("down")

        def unhealthy_until(self, now: datetime) -> dict[str, datetime]:
            raise OSError("down")

    health = ModelHealth(FakeClock(), Broken(), refresh_s=0)
    assert health.mark("small-a", 30) == 30
    health.refresh()
    assert list(health.unhealthy()) == ["small-a"]


def test_replicas_share_marks_through_a_sqlite_log(
    make_intents: Callable[..., Path], clock: FakeClock, tmp_path: Path
) -> None:
    directory = make_intents(
        TINY_INTENTS, STEPS_YAML.replace("  cooldown_s: 30\n", "  cooldown_s: 30\n  refresh_s: 0\n")
    )
    intent_set = load_intents(directory)
    url = f"sqlite://{tmp_path / 'shared.db'}"
    one = Router.in_memory(intent_set, HashingEncoder(), exact_numpy=True, log=url, clock=clock)
    two = Router.in_memory(intent_set, HashingEncoder(), exact_numpy=True, log=url, clock=clock)
    one.mark_unhealthy("small-a", cooldown_s=120)
    two._health.refresh()
    assert two.route(SUNDAY).model == "small-b"
    one.close()
    two.close()


# --- hostile cooldowns: bounded by health.max_cooldown_s, and a refusal marks nothing ----

LIMITED_YAML = STEPS_YAML.replace("  cooldown_s: 30\n", "  cooldown_s: 30\n  max_cooldown_s: 600\n")


@pytest.mark.parametrize(
    ("cooldown", "fragment"),
    [
        (1e12, "at most 600 seconds (health.max_cooldown_s), got 1e+12"),
        (601, "at most 600 seconds"),
        (10**400, "got an integer of 1329 bits"),
        (float("inf"), "at most 600 seconds"),
        (float("nan"), "more than 0"),
        (-1, "more than 0"),
        ("60", "must be a number of seconds, got str"),
        (True, "must be a number of seconds, got bool"),
    ],
)
def test_a_hostile_cooldown_is_refused_and_marks_nothing(
    make_intents: Callable[..., Path], clock: FakeClock, cooldown: object, fragment: str
) -> None:
    from modeltriage.log.memory import MemoryStore

    store = MemoryStore()
    intent_set = load_intents(make_intents(TINY_INTENTS, LIMITED_YAML))
    router = Router.in_memory(
        intent_set, HashingEncoder(), exact_numpy=True, log=store, clock=clock
    )
    with pytest.raises(InputError) as caught:
        router.mark_unhealthy("small-a", cooldown)  # type: ignore[arg-type]
    assert fragment in str(caught.value)
    assert router.unhealthy_models() == {}
    assert store.unhealthy_until(datetime.now(timezone.utc)) == {}
    assert router.mark_unhealthy("small-a", 600) == 600  # the limit itself is allowed
    router.close()


def test_the_default_cooldown_limit_is_an_hour(router: Router) -> None:
    assert router.config.health.max_cooldown_s == 3600
    assert router.mark_unhealthy("small-a", 3600) == 3600
    with pytest.raises(InputError, match="at most 3600 seconds"):
        router.mark_unhealthy("mid-a", 3601)
    assert list(router.unhealthy_models()) == ["small-a"]


@pytest.mark.parametrize(
    ("health", "fragment"),
    [
        ("  cooldown_s: 30\n  max_cooldown_s: 10\n", "cooldown_s (30) is over max_cooldown_s (10)"),
        ("  max_cooldown_s: 0\n", "max_cooldown_s"),
        ("  max_cooldown_s: .inf\n", "max_cooldown_s"),
        ("  max_cooldown_s: 1e12\n", "max_cooldown_s"),
        ("  cooldown_s: .inf\n", "cooldown_s"),
    ],
)
def test_bad_cooldown_settings_are_config_errors(
    make_intents: Callable[..., Path], health: str, fragment: str
) -> None:
    yaml = STEPS_YAML.replace("health:\n  cooldown_s: 30\n", "health:\n" + health)
    with pytest.raises(ConfigError, match=re.escape(fragment)):
        load_intents(make_intents(TINY_INTENTS, yaml))


@pytest.mark.parametrize(
    "body",
    [
        '{"cooldown_s": 1e12}',
        '{"cooldown_s": 3601}',
        '{"cooldown_s": 1' + "0" * 400 + "}",
        '{"cooldown_s": 1e309}',
        '{"cooldown_s": NaN}',
        '{"cooldown_s": Infinity}',
    ],
)
def test_a_hostile_cooldown_over_http_is_a_422_and_marks_nothing(
    client: TestClient, body: str
) -> None:
    r = client.post(
        "/health/models/small-a/unhealthy",
        content=body,
        headers={"content-type": "application/json"},
    )
    assert r.status_code == 422, r.text
    assert "cooldown_s" in r.text
    assert client.get("/health/models").json() == {"unhealthy": []}
    assert client.get("/healthz").json()["unhealthy_models"] == []


def test_an_over_limit_cooldown_over_http_names_the_limit(client: TestClient) -> None:
    r = client.post("/health/models/small-a/unhealthy", json={"cooldown_s": 1e10})
    assert r.status_code == 422
    assert r.json() == {
        "detail": "cooldown_s must be at most 3600 seconds (health.max_cooldown_s), got 1e+10"
    }


def test_clearing_a_mark_clears_it_here_and_in_the_shared_store() -> None:
    from modeltriage.followup.model_health import ModelHealth
    from modeltriage.log.memory import MemoryStore

    store = MemoryStore()
    wall = [datetime.now(timezone.utc)]
    health = ModelHealth(FakeClock(), store, refresh_s=3600, wall=lambda: wall[0])
    other = ModelHealth(FakeClock(), store, refresh_s=0, wall=lambda: wall[0])
    health.mark("small-a", 600)
    other.refresh()
    assert list(other.unhealthy()) == ["small-a"]
    assert other.clear("small-a") is True  # cleared by another replica
    assert store.unhealthy_until(wall[0]) == {}
    assert health.clear("small-a") is True and health.unhealthy() == {}
    assert health.clear("small-a") is False


def test_a_shared_read_begun_before_a_clear_does_not_bring_the_mark_back() -> None:
    from modeltriage.followup.model_health import ModelHealth

    now = datetime.now(timezone.utc)

    class Slow:
        """Answers a read with what the store held when the read began."""

        url = "slow:"
        health: ModelHealth

        def mark_unhealthy(self, model: str, until: datetime) -> None: ...

        def unhealthy_until(self, at: datetime) -> dict[str, datetime]:
            self.health.clear("small-a")  # the clear lands while the read is in flight
            return {"small-a": now + timedelta(minutes=10)}

        def clear_unhealthy(self, model: str) -> bool:
            return True

    slow = Slow()
    slow.health = ModelHealth(FakeClock(), slow, refresh_s=3600, wall=lambda: now)
    slow.health.refresh()
    assert slow.health.unhealthy() == {}
