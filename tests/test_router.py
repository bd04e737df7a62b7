"""Router wiring: fast tests with the fake encoder, then the real encoder and FAISS index."""

from __future__ import annotations

import re

import pytest

from modeltriage import Decision, InputError, RouteOptions, Router


def test_route_returns_one_shape(fake_router: Router) -> None:
    decision = fake_router.route("what time do you close today")
    assert isinstance(decision, Decision)
    assert decision.intent == "hours" and decision.tier == "small"
    assert decision.model == "small-a" and decision.reason == "confident"
    assert decision.fallbacks == ["small-b", "mid-a", "big-a"]
    assert len(decision.id) == 32 and decision.latency_ms >= 0
    assert decision.index_version == fake_router.manifest.version
    assert decision.neighbours == []


def test_explain_returns_neighbours(fake_router: Router) -> None:
    decision = fake_router.route("what time do you close today", RouteOptions(explain=True))
    assert decision.neighbours[0].text == "what time do you close today"
    assert decision.neighbours[0].similarity == pytest.approx(1.0, abs=1e-5)
    sims = [n.similarity for n in decision.neighbours]
    assert sims == sorted(sims, reverse=True)


def test_batch_matches_single(fake_router: Router) -> None:
    texts = ["refund my purchase please", "when do you open on sunday", "zzz qqq"]
    batch = fake_router.route_batch(texts)
    singles = [fake_router.route(t) for t in texts]
    assert [(d.intent, d.model, d.reason) for d in batch] == [
        (d.intent, d.model, d.reason) for d in singles
    ]
    assert fake_router.route_batch([]) == []


@pytest.mark.parametrize(
    ("text", "message", "too_large"),
    [
        ("", "text is empty", False),
        ("   \n\t", "text is empty", False),
        ("x" * 40_000, "over the limit of 32768", True),
        ("bad \udc80 surrogate", "not valid Unicode", False),
        (123, "text must be a string, got int", False),
    ],
)
def test_bad_text(fake_router: Router, text: object, message: str, too_large: bool) -> None:
    with pytest.raises(InputError, match=message) as info:
        fake_router.route(text)  # type: ignore[arg-type]
    assert info.value.too_large is too_large


def test_batch_errors_name_the_position(fake_router: Router) -> None:
    with pytest.raises(InputError, match=r"texts\[1\]: text is empty"):
        fake_router.route_batch(["fine", " "])
    with pytest.raises(InputError, match=r"limits\.max_batch"):
        fake_router.route_batch(["a"] * 257)


def test_multibyte_limit_counts_bytes(fake_router: Router) -> None:
    with pytest.raises(InputError):
        fake_router.route("é" * 16_385)  # 32,770 bytes in UTF-8
    assert fake_router.route("é" * 100).reason in ("no_match", "confident", "low_margin")


# --- through the real all-MiniLM-L6-v2 encoder and the FAISS index saved on disk ----------


@pytest.mark.real
@pytest.mark.parametrize(
    ("text", "intent", "tier"),
    [
        ("what time do you open on saturday?", "store_hours", "small"),
        ("where is my package, it was supposed to arrive yesterday", "order_status", "small"),
        ("I forgot my password and can't log in", "password_reset", "small"),
        ("I was charged twice for the same order", "billing_dispute", "mid"),
        (
            "my router keeps dropping wifi after the firmware update, I already reset it twice",
            "technical_troubleshooting",
            "flagship",
        ),
    ],
)
def test_real_routes_shipped_intents(
    shipped_router: Router, text: str, intent: str, tier: str
) -> None:
    decision = shipped_router.route(text)
    assert decision.intent == intent, decision.explanation
    assert decision.tier == tier or decision.reason == "low_margin", decision.explanation


@pytest.mark.real
def test_real_code_question_goes_to_the_code_model(shipped_router: Router) -> None:
    decision = shipped_router.route(
        "my python client for your API raises KeyError: 'items' when the cart is empty, stack trace below"
    )
    assert decision.intent == "code_debugging"
    assert (decision.model, decision.reason) == ("codestral", "specialised_model")


@pytest.mark.real
def test_real_gibberish_matches_nothing(shipped_router: Router) -> None:
    decision = shipped_router.route("zxqv blorp fnord 7781 kkkk")
    assert decision.reason == "no_match" and decision.intent is None and decision.cascaded
    assert decision.tier == shipped_router.config.flagship_tier


@pytest.mark.real
def test_real_easy_is_cheaper_than_hard(shipped_router: Router) -> None:
    easy = shipped_router.route("are you open on sunday")
    hard = shipped_router.route(
        "under EU consumer law am I entitled to a repair after the warranty expired if the defect was there at delivery?"
    )
    assert easy.estimated_cost_usd * 10 < hard.estimated_cost_usd


@pytest.mark.real
def test_real_explain_and_batch(shipped_router: Router) -> None:
    decisions = shipped_router.route_batch(
        ["hi there!", "cancel my order please"], RouteOptions(explain=True)
    )
    assert [d.intent for d in decisions] == ["greeting_smalltalk", "cancel_order"]
    assert all(len(d.neighbours) == shipped_router.config.scoring.top_k for d in decisions)
    assert shipped_router.manifest.encoder.startswith("sentence-transformers/all-MiniLM-L6-v2")


@pytest.mark.real
def test_real_exemplar_override_routes_by_tier(shipped_router: Router) -> None:
    # code_debugging names codestral, but a trivial question near an `easy` exemplar
    # goes to the small tier.
    decision = shipped_router.route("what is a for loop")
    assert decision.intent == "code_debugging"
    assert (decision.difficulty, decision.tier, decision.reason) == ("easy", "small", "confident")


def test_escalate_names_the_next_model_up(fake_router: Router) -> None:
    hedge = "I'm not sure, it depends."
    by_model = fake_router.escalate(hedge, model="small-a")
    assert (by_model.escalate, by_model.to_model) == (True, "mid-a")
    assert "hedge" in by_model.reasons
    by_text = fake_router.escalate(hedge, text="when do you open on sunday")
    assert by_text.escalate and by_text.to_model == "mid-a"
    fine = fake_router.escalate("We open at nine on Sundays.", model="small-a")
    assert (fine.escalate, fine.to_model, fine.reasons) == (False, None, [])
    assert fake_router.escalate(hedge, model="big-a").to_model is None
    with pytest.raises(InputError, match="give `model`"):
        fake_router.escalate("x")


@pytest.mark.parametrize(
    ("fields", "fragment"),
    [
        ({"max_cost_usd": float("nan")}, "max_cost_usd must be a number greater than 0, got nan"),
        ({"max_latency_ms": float("inf")}, "max_latency_ms must be a number greater than 0"),
        ({"max_cost_usd": 10**400}, "max_cost_usd must be a number greater than 0"),
        ({"step": "\ud800" * 300}, "step:"),
        ({"metadata": {"k": [1]}}, "metadata.k"),
        ({"explain": "yes"}, "explain:"),
        ({"tenant": "acme"}, "tenant: Extra inputs are not permitted"),
    ],
)
def test_route_options_refuse_hostile_values_naming_the_field(
    fields: dict[str, object], fragment: str
) -> None:
    with pytest.raises(InputError, match=re.escape(fragment)):
        RouteOptions(**fields)  # type: ignore[arg-type]
