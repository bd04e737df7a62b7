"""The answer-time cascade check: every signal, both ways, and where to escalate to."""

from __future__ import annotations

import math
from typing import Any

import pytest
import yaml
from pydantic import ValidationError

from modeltriage.core.config import RouterConfig
from modeltriage.core.escalation_settings import SIGNALS, EscalationSettings
from modeltriage.errors import InputError
from modeltriage.followup.answers import (
    answers_agree,
    check_answer,
    extract_choice,
    find_phrase,
    is_empty,
    next_tier_model,
    normalise_answer,
    stronger_model,
    truncation,
)

from .conftest import ROUTER_YAML

DEFAULT = EscalationSettings()
# Only the signal under test: the others stay quiet whatever the answer.
ALL_OFF: dict[str, Any] = {
    "empty": False,
    "truncated": False,
    "refusal": False,
    "hedge": False,
    "no_choice": False,
    "min_self_confidence": None,
    "min_mean_logprob": None,
    "disagreement": False,
}


def only(**on: Any) -> EscalationSettings:
    return EscalationSettings(**{**ALL_OFF, **on})


LONG_OK = "The store opens at nine in the morning and closes at six in the evening on weekdays."
LONG_CUT = "The store opens at nine in the morning and closes at six in the evening on week"


@pytest.mark.parametrize(
    ("answer", "settings", "kwargs", "reasons"),
    [
        # empty
        ("", only(empty=True), {}, ["empty"]),
        ("  \n\t ", only(empty=True), {}, ["empty"]),
        ("...", only(empty=True), {}, ["empty"]),
        ("```\n```", only(empty=True), {}, ["empty"]),
        ("0", only(empty=True), {}, []),
        ("B", only(empty=True), {}, []),
        ("", only(), {}, []),
        # truncated
        ("fine.", only(truncated=True), {"finish_reason": "length"}, ["truncated"]),
        ("fine.", only(truncated=True), {"finish_reason": "MAX_TOKENS"}, ["truncated"]),
        ("fine.", only(truncated=True), {"finish_reason": "stop"}, []),
        ("```python\nx = 1\n", only(truncated=True), {}, ["truncated"]),
        ("```python\nx = 1\n", only(truncated=True), {"finish_reason": "stop"}, ["truncated"]),
        ("```python\nx = 1\n```", only(truncated=True), {}, []),
        (LONG_CUT, only(truncated=True), {}, ["truncated"]),
        (LONG_CUT, only(truncated=True), {"finish_reason": "stop"}, []),
        (LONG_CUT, only(truncated=True, truncation_min_words=None), {}, []),
        (LONG_OK, only(truncated=True), {}, []),
        ("Paris", only(truncated=True), {}, []),
        (LONG_OK + "\n\n- apples\n- pears", only(truncated=True), {}, []),
        (LONG_OK + "\n\n    return x", only(truncated=True), {}, []),
        (LONG_OK + " 🙂", only(truncated=True), {}, []),
        (LONG_OK + "\nprint(match_ab('b'))  # False", only(truncated=True), {}, []),
        (LONG_OK + "\nThe sum of the first 5 odd numbers is 2210", only(truncated=True), {}, []),
        (
            LONG_OK + "\n1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13,",
            only(truncated=True),
            {},
            ["truncated"],
        ),
        (LONG_CUT + " -", only(truncated=True), {}, ["truncated"]),
        (LONG_CUT, only(), {"finish_reason": "length"}, []),
        # refusal
        ("I can't help with that request.", only(refusal=True), {}, ["refusal"]),
        ("I can\u2019t help with that.", only(refusal=True), {}, ["refusal"]),
        ("Sorry, I cannot  ASSIST here.", only(refusal=True), {}, ["refusal"]),
        ("As an AI language model, I have no opinions.", only(refusal=True), {}, ["refusal"]),
        ("I can not provide that.", only(refusal=True), {}, ["refusal"]),
        ("Our aim as an aide is to help.", only(refusal=True), {}, []),
        ("Here is how to reset your password.", only(refusal=True), {}, []),
        ("Nope.", only(refusal=True, extra_refusal_phrases=("nope",)), {}, ["refusal"]),
        ("As an AI, no.", only(refusal=True, refusal_phrases=("nope",)), {}, []),
        ("I can't help with that.", only(), {}, []),
        # hedge
        ("I'm not sure, but maybe B.", only(hedge=True), {}, ["hedge"]),
        ("I am not sure.", only(hedge=True), {}, ["hedge"]),
        ("I DON\u2019T KNOW", only(hedge=True), {}, ["hedge"]),
        ("I cannot be certain, but probably 42.", only(hedge=True), {}, ["hedge"]),
        ("It depends.", only(hedge=True), {}, ["hedge"]),
        (
            "It depends on your plan. " + "Basic costs five dollars a month. " * 8,
            only(hedge=True),
            {},
            [],
        ),
        ("Probably, it depends.", only(hedge=True, short_hedge_max_words=1), {}, []),
        ("The answer is B.", only(hedge=True), {}, []),
        ("I know the answer: B.", only(hedge=True), {}, []),
        ("Perhaps B.", only(hedge=True, extra_hedge_phrases=("perhaps",)), {}, ["hedge"]),
        ("I'm not sure.", only(hedge=True, hedge_phrases=("perhaps",)), {}, []),
        ("I'm not sure.", only(), {}, []),
        # no_choice: only when the caller says what the choices are
        ("Rober", only(no_choice=True), {"choices": ["A", "B"]}, ["no_choice"]),
        ("C", only(no_choice=True), {"choices": ["A", "B"]}, ["no_choice"]),
        ("B", only(no_choice=True), {"choices": ["A", "B"]}, []),
        ("Dennis", only(no_choice=True), {"choices": {"A": "Ian", "B": "Dennis"}}, []),
        ("Rober", only(no_choice=True), {}, []),
        ("Rober", only(), {"choices": ["A", "B"]}, []),
        ("", only(no_choice=True), {"choices": ["A", "B"]}, []),
        # low_self_confidence
        ("B", only(min_self_confidence=0.5), {"confidence": 0.49}, ["low_self_confidence"]),
        ("B", only(min_self_confidence=0.5), {"confidence": 0.5}, []),
        ("B", only(min_self_confidence=0.5), {"confidence": 0}, ["low_self_confidence"]),
        ("B", only(min_self_confidence=0.0), {"confidence": 0.0}, []),
        ("B", only(min_self_confidence=0.5), {}, []),
        ("B", only(), {"confidence": 0.0}, []),
        # low_logprob: the mean, not the worst token
        ("B", only(min_mean_logprob=-1.0), {"logprobs": [-2.0]}, ["low_logprob"]),
        ("B", only(min_mean_logprob=-1.0), {"logprobs": [-0.1, -1.9]}, []),
        ("B", only(min_mean_logprob=-1.0), {"logprobs": [-0.1, -2.1]}, ["low_logprob"]),
        ("B", only(min_mean_logprob=-1.0), {"logprobs": [0.0]}, []),
        ("B", only(min_mean_logprob=-1.0), {"logprobs": [-math.inf]}, ["low_logprob"]),
        ("B", only(min_mean_logprob=-1.0), {"logprobs": []}, []),
        ("B", only(min_mean_logprob=-1.0), {}, []),
        ("B", only(), {"logprobs": [-9.0]}, []),
        # disagreement
        ("B", only(disagreement=True), {"second_answer": "C"}, ["disagreement"]),
        ("B", only(disagreement=True), {"second_answer": "(B) Dennis"}, []),
        ("Paris", only(disagreement=True), {"second_answer": "paris."}, []),
        ("Paris", only(disagreement=True), {"second_answer": "Lyon"}, ["disagreement"]),
        (
            "B",
            only(disagreement=True),
            {"second_answer": "Dennis", "choices": {"A": "Ian", "B": "Dennis"}},
            [],
        ),
        (
            "B",
            only(disagreement=True),
            {"second_answer": "Ian", "choices": {"A": "Ian", "B": "Dennis"}},
            ["disagreement"],
        ),
        (
            "B",
            only(disagreement=True),
            {"second_answer": "no idea", "choices": ["A", "B"]},
            ["disagreement"],
        ),
        ("", only(disagreement=True), {"second_answer": ""}, []),
        ("B", only(disagreement=True), {}, []),
        ("B", only(), {"second_answer": "C"}, []),
    ],
)
def test_each_signal(
    answer: str, settings: EscalationSettings, kwargs: dict[str, Any], reasons: list[str]
) -> None:
    check = check_answer(answer, settings, **kwargs)
    assert check.reasons == reasons, check.detail
    assert check.escalate is bool(reasons)
    for reason in reasons:
        assert reason in check.detail


def test_reasons_come_in_a_fixed_order_with_details() -> None:
    check = check_answer(
        "I'm not sure. As an AI I cannot assist with",
        DEFAULT,
        confidence=0.1,
        logprobs=[-3.0, -2.0],
        finish_reason="length",
        second_answer="B",
        choices=["A", "B"],
    )
    assert check.reasons == [
        "truncated",
        "refusal",
        "hedge",
        "no_choice",
        "low_self_confidence",
        "low_logprob",
        "disagreement",
    ]
    assert list(SIGNALS).index("empty") == 0
    assert "0.1 < 0.5" in check.detail and "-2.500 < -1" in check.detail


def test_an_empty_answer_is_only_empty() -> None:
    # Hedge, refusal and choice checks would only repeat "empty" in other words.
    check = check_answer("   ", DEFAULT, choices=["A", "B"])
    assert check.reasons == ["empty"]


def test_a_good_answer_says_what_was_not_checked() -> None:
    check = check_answer("We open at nine.", DEFAULT)
    assert not check.escalate and check.reasons == []
    assert "no signal fired" in check.detail
    assert "low_self_confidence (no confidence given)" in check.detail
    assert "disagreement (no second answer given)" in check.detail


@pytest.mark.parametrize(
    ("kwargs", "fragment"),
    [
        ({"confidence": 1.5}, "confidence must be"),
        ({"confidence": -0.1}, "confidence must be"),
        ({"confidence": math.nan}, "confidence must be"),
        ({"logprobs": [-0.5, 0.2]}, "logprobs[1]"),
        ({"logprobs": [math.nan]}, "logprobs[0]"),
    ],
)
def test_bad_caller_figures_are_input_errors(kwargs: dict[str, Any], fragment: str) -> None:
    with pytest.raises(InputError, match=fragment.replace("[", r"\[")):
        check_answer("B", DEFAULT, **kwargs)


@pytest.mark.parametrize(
    ("answer", "choices", "expected"),
    [
        ("B", None, "B"),
        ("b", None, "B"),
        (" B\n", None, "B"),
        ("(B)", None, "B"),
        ("B)", None, "B"),
        ("B.", None, "B"),
        ("**B**", None, "B"),
        ("['B']", None, "B"),
        ("B) Dennis", None, "B"),
        ("b) Dennis", None, "B"),
        ("D (an asteroid)", None, "D"),
        ("B - Dennis", None, "B"),
        ("a) b) c)", None, "A"),
        ("B. Because Dennis despised it.", None, "B"),
        ("Answer: (C)", None, "C"),
        ("The correct answer is D.", None, "D"),
        ("I'd pick option A here", None, "A"),
        ("A dog chased the cat.", None, None),
        ("A.I. is hard", None, None),
        ("the answer is a dog", None, None),
        ("", None, None),
        ("F", None, None),
        ("E", ["A", "B"], None),
        ("Dennis", None, None),
        ("Dennis", {"A": "Ian", "B": "Dennis"}, "B"),
        ("dennis.", {"A": "Ian", "B": "Dennis"}, "B"),
        ("Denn", {"A": "Ian", "B": "Dennis"}, "B"),
        ("De", {"A": "Ian", "B": "Dennis"}, None),
        ("Dennis despised it", {"A": "Ian", "B": "Dennis"}, "B"),
        ("Ian and Dennis", {"A": "Ian", "B": "Dennis"}, None),
        ("Tan", {"A": "Tanya", "B": "Tanner"}, None),
        ("2", ["1", "2", "3"], "2"),
        ("12", ["1", "2"], None),
        ("B", [], None),
    ],
)
def test_extract_choice(answer: str, choices: Any, expected: str | None) -> None:
    assert extract_choice(answer, choices) == expected


@pytest.mark.parametrize(
    ("answer", "expected"),
    [
        ("Paris", "paris"),
        ("  **Paris**. ", "paris"),
        ("The answer is Paris.", "paris"),
        ("Final answer: Paris", "paris"),
        ("1,000", "1000"),
        ("$1000.00", "1000"),
        ("The answer is 3.50", "3.5"),
        ("-7", "-7"),
        ("50%", "50"),
        ("\u201cNew  York\u201d", "new york"),
        ("", ""),
        ("line one\n\nline two", "line one line two"),
    ],
)
def test_normalise_answer(answer: str, expected: str) -> None:
    assert normalise_answer(answer) == expected


@pytest.mark.parametrize(
    ("first", "second", "choices", "agree"),
    [
        ("B", "B\n", None, True),
        ("B", "(B) Dennis", None, True),
        ("B", "C", None, False),
        ("1,000", "1000", None, True),
        ("def f(x):\n    return x", "def f(x):\n  return x", None, True),
        ("def f(x):\n    return x", "def f(x):\n    return x + 1", None, False),
        ("Rober", "B", ["A", "B"], False),
        ("Rober", "B", {"A": "Ann", "B": "Robert"}, True),
        ("", "", None, True),
        ("", "", ["A", "B"], False),
    ],
)
def test_answers_agree(first: str, second: str, choices: Any, agree: bool) -> None:
    assert answers_agree(first, second, choices) is agree
    assert answers_agree(second, first, choices) is agree


def test_helpers_directly() -> None:
    assert find_phrase("Well, I don\u2019t know.", ["I don't know"]) == "i don't know"
    assert find_phrase("anything", []) is None
    assert is_empty(" \n") and is_empty("—") and not is_empty("é")
    assert truncation("x", "length", None) is not None
    assert truncation(LONG_CUT, None, 100) is None


def test_settings_are_strict_and_frozen() -> None:
    with pytest.raises(ValidationError, match="Extra inputs"):
        EscalationSettings(hedges=["x"])  # type: ignore[call-arg]
    with pytest.raises(ValidationError):
        EscalationSettings(min_self_confidence=1.5)
    with pytest.raises(ValidationError):
        EscalationSettings(min_mean_logprob=0.5)
    with pytest.raises(ValidationError):
        EscalationSettings(extra_hedge_phrases=("  ",))
    with pytest.raises(ValidationError, match="frozen"):
        DEFAULT.hedge = False  # type: ignore[misc]
    # None disables a threshold; 0 is a real threshold, not "off".
    assert EscalationSettings(min_self_confidence=None).min_self_confidence is None
    assert EscalationSettings(min_self_confidence=0).min_self_confidence == 0


@pytest.fixture
def config() -> RouterConfig:
    return RouterConfig.model_validate(yaml.safe_load(ROUTER_YAML))


def test_router_config_carries_escalation_settings(config: RouterConfig) -> None:
    assert config.escalation == EscalationSettings()
    raw = yaml.safe_load(ROUTER_YAML)
    raw["escalation"] = {"extra_hedge_phrases": ["perhaps"], "min_mean_logprob": None}
    custom = RouterConfig.model_validate(raw)
    assert custom.escalation.extra_hedge_phrases == ("perhaps",)
    assert custom.escalation.min_mean_logprob is None
    raw["escalation"] = {"hedges": []}
    with pytest.raises(ValidationError, match="Extra inputs"):
        RouterConfig.model_validate(raw)


@pytest.mark.parametrize(
    ("model", "expected"),
    [
        ("small-a", "mid-a"),
        ("small-b", "mid-a"),
        ("coder", "big-a"),
        ("mid-a", "big-a"),
        ("big-a", None),
    ],
)
def test_next_tier_model(config: RouterConfig, model: str, expected: str | None) -> None:
    assert next_tier_model(config, model, 100) == expected


@pytest.mark.parametrize(
    ("model", "candidates", "expected"),
    [
        ("small-a", ["small-b", "mid-a", "big-a"], "mid-a"),
        ("small-a", ["small-b", "big-a"], "big-a"),
        ("small-a", ["small-b"], "mid-a"),
        ("coder", ["mid-a", "big-a"], "big-a"),
        ("small-a", ["no-such-model", "big-a"], "big-a"),
        ("big-a", ["small-a", "mid-a"], None),
    ],
)
def test_stronger_model(
    config: RouterConfig, model: str, candidates: list[str], expected: str | None
) -> None:
    assert stronger_model(config, model, candidates, 100) == expected


def test_unknown_model_is_an_input_error(config: RouterConfig) -> None:
    with pytest.raises(InputError, match=r"unknown model 'gpt-9'.*small-a"):
        next_tier_model(config, "gpt-9", 0)
    with pytest.raises(InputError, match="unknown model"):
        stronger_model(config, "gpt-9", ["big-a"], 0)


@pytest.mark.parametrize(
    ("second", "expected"),
    [
        (None, ["missing_second_answer"]),
        ("B", []),
        ("The answer is (B).", []),
        ("C", ["disagreement"]),
    ],
)
def test_a_plan_that_asks_a_second_opinion_escalates_without_one(
    second: str | None, expected: list[str]
) -> None:
    settings = EscalationSettings(disagreement=False)  # the plan's ask wins over the switch
    check = check_answer("B", settings, second_answer=second, second_answer_required="yi")
    assert check.reasons == expected
    if second is None:
        assert "asks yi for a second answer" in check.detail
