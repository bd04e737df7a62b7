"""Answer-time cascade: should a cheap model's answer be escalated to a stronger model?

The router decides before anything is answered; this module looks at the answer once it
exists. ``check_answer`` is a pure function of the answer and whatever the caller knows
about it (a self-rated confidence, token log-probabilities, the finish reason, a second
cheap model's answer, the multiple-choice labels) and returns the signals that fired, as
stable machine codes, with a sentence a person can read.

This module must not import ``config`` (``config`` imports ``EscalationSettings`` from
here): the router config is only a type annotation, and ``policy`` is imported lazily.
"""

from __future__ import annotations

import math
import re
import unicodedata
from collections.abc import Mapping, Sequence
from functools import lru_cache
from typing import TYPE_CHECKING, Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from .errors import InputError

if TYPE_CHECKING:
    from .config import RouterConfig

Reason = Literal[
    "empty",
    "truncated",
    "refusal",
    "hedge",
    "no_choice",
    "low_self_confidence",
    "low_logprob",
    "disagreement",
    "missing_second_answer",
]
# The order reasons are reported in, whatever order they were found in.
REASONS: tuple[Reason, ...] = (
    "empty",
    "truncated",
    "refusal",
    "hedge",
    "no_choice",
    "low_self_confidence",
    "low_logprob",
    "disagreement",
    "missing_second_answer",
)

DEFAULT_HEDGE_PHRASES: tuple[str, ...] = (
    "I'm not sure",
    "I am not sure",
    "I'm not certain",
    "I am not certain",
    "I'm unsure",
    "I am unsure",
    "I don't know",
    "I do not know",
    "I cannot be certain",
    "I can't be certain",
    "I cannot be sure",
    "I can't be sure",
    "I'm not confident",
    "I am not confident",
    "hard to say",
    "difficult to say",
    "I might be wrong",
    "I may be wrong",
    "I could be wrong",
    "not enough information",
)
# These hedge only when the answer stops there: "it depends on X: if X then A, else B"
# is an answer, a bare "It depends." is not.
DEFAULT_SHORT_HEDGE_PHRASES: tuple[str, ...] = (
    "it depends",
    "that depends",
    "depends on the context",
    "depends on the situation",
)
DEFAULT_REFUSAL_PHRASES: tuple[str, ...] = (
    "I can't help with",
    "I cannot help with",
    "I can't assist",
    "I cannot assist",
    "I'm unable to help",
    "I am unable to help",
    "I'm unable to assist",
    "I am unable to assist",
    "I'm not able to help",
    "I am not able to help",
    "I won't be able to help",
    "I can't provide",
    "I cannot provide",
    "I can't answer",
    "I cannot answer",
    "I must decline",
    "as an AI",
    "as a language model",
)
# Finish reasons that mean "stopped at the token limit": OpenAI, Anthropic, Gemini.
LENGTH_FINISH_REASONS = frozenset({"length", "max_tokens", "max_output_tokens"})
# Labels tried when the caller does not say what the choices are.
DEFAULT_CHOICE_LABELS: tuple[str, ...] = ("A", "B", "C", "D", "E")

Phrase = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200)]
Choices = Sequence[str] | Mapping[str, str]


class EscalationSettings(BaseModel):
    """Which answer signals escalate, and their thresholds.

    A threshold of ``None`` turns its signal off; thresholds are never read by
    truthiness. Signals that need caller data (confidence, log-probabilities, a second
    answer, choices) only fire when the caller passes it.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    empty: bool = Field(default=True, description="escalate answers with no letter or digit")
    truncated: bool = Field(
        default=True,
        description="escalate answers cut off: finish_reason 'length', an unclosed code "
        "fence, or (finish_reason unknown) a long answer ending mid-sentence",
    )
    truncation_min_words: int | None = Field(
        default=12,
        ge=1,
        description="answers shorter than this are never called cut off mid-sentence "
        "('B', '42', 'Paris'); null disables the mid-sentence heuristic",
    )
    refusal: bool = True
    refusal_phrases: tuple[Phrase, ...] = DEFAULT_REFUSAL_PHRASES
    extra_refusal_phrases: tuple[Phrase, ...] = Field(
        default=(), description="added to refusal_phrases (keeps the defaults)"
    )
    hedge: bool = True
    hedge_phrases: tuple[Phrase, ...] = DEFAULT_HEDGE_PHRASES
    extra_hedge_phrases: tuple[Phrase, ...] = Field(
        default=(), description="added to hedge_phrases (keeps the defaults)"
    )
    short_hedge_phrases: tuple[Phrase, ...] = DEFAULT_SHORT_HEDGE_PHRASES
    short_hedge_max_words: int = Field(
        default=30, ge=1, description="short_hedge_phrases count only in answers this short"
    )
    no_choice: bool = Field(
        default=True,
        description="when the caller passes choices, escalate an answer naming none of them",
    )
    min_self_confidence: float | None = Field(
        default=0.5, ge=0, le=1, description="escalate when the model's own 0..1 rating is below"
    )
    min_mean_logprob: float | None = Field(
        default=-1.0,
        le=0,
        description="escalate when the mean token log-probability is below (-1.0: a "
        "geometric-mean token probability of 0.37)",
    )
    disagreement: bool = Field(
        default=True, description="escalate when a second cheap answer differs"
    )
    max_answer_bytes: int = Field(
        default=262_144, ge=1, description="longest answer /escalate accepts (413 above)"
    )


class EscalationCheck(BaseModel):
    """The verdict on one answer."""

    model_config = ConfigDict(frozen=True)

    escalate: bool
    reasons: list[Reason] = Field(description="signals that fired, in a fixed order")
    detail: str = Field(description="the same in words, with the figures")


class Escalation(EscalationCheck):
    """The verdict plus where to go: ``to_model`` is None when staying or at the top."""

    to_model: str | None


# --- text normalisation -------------------------------------------------------------

_QUOTES = str.maketrans({"\u2018": "'", "\u2019": "'", "\u02bc": "'", "\u201c": '"', "\u201d": '"'})


def _plain(text: str) -> str:
    """Casefolded, curly quotes straightened, whitespace collapsed: what phrases match."""
    text = unicodedata.normalize("NFKC", text).translate(_QUOTES).casefold()
    text = re.sub(r"\bcan not\b", "cannot", text)
    return " ".join(text.split())


@lru_cache(maxsize=64)
def _phrase_pattern(phrases: tuple[str, ...]) -> re.Pattern[str] | None:
    cleaned = sorted({_plain(p) for p in phrases if _plain(p)}, key=len, reverse=True)
    if not cleaned:
        return None
    # Whole words only: "as an ai" must not match inside "as an aim".
    alternatives = "|".join(re.escape(p) for p in cleaned)
    return re.compile(rf"(?<!\w)(?:{alternatives})(?!\w)")


def find_phrase(text: str, phrases: Sequence[str]) -> str | None:
    """The first of ``phrases`` found in ``text`` (case, quotes and spacing ignored)."""
    pattern = _phrase_pattern(tuple(phrases))
    if pattern is None:
        return None
    match = pattern.search(_plain(text))
    return None if match is None else match.group(0)


def is_empty(answer: str) -> bool:
    """No letter or digit at all: whitespace, punctuation or an empty code fence."""
    return not any(ch.isalnum() for ch in answer)


_STRUCTURED_LINE = re.compile(r"^(?:[-*+|#>]|\d+[.)]\s)")
# Brackets, "=", ";" or "#" mark a line of code, which ends without punctuation.
_CODE_LINE = re.compile(r"[=(){}\[\];#]")


def truncation(answer: str, finish_reason: str | None, min_words: int | None) -> str | None:
    """Why ``answer`` looks cut off, or None."""
    if finish_reason is not None and finish_reason.strip().casefold() in LENGTH_FINISH_REASONS:
        return f"finish_reason {finish_reason!r}: the model hit its token limit"
    if answer.count("```") % 2 == 1:
        return "a code fence is opened and never closed"
    # The finish reason, when known, is better evidence than punctuation.
    if finish_reason is not None or min_words is None:
        return None
    if len(answer.split()) < min_words:
        return None
    lines = [line for line in answer.splitlines() if line.strip()]
    last = lines[-1] if lines else ""
    # Lists, tables, headings and code legitimately end without punctuation.
    if last != last.lstrip() or _STRUCTURED_LINE.match(last.strip()) or _CODE_LINE.search(last):
        return None
    # Only a letter, a comma or a hyphen is mid-sentence; a final digit is too often a
    # printed result ("Output: 30.0") to count.
    end = last.rstrip()[-1:]
    if not (end.isalpha() or end in ",-"):
        return None
    return f"ends mid-sentence ({last.rstrip()[-30:]!r}) with no finish_reason given"


# --- multiple-choice extraction -----------------------------------------------------

_MARKDOWN = re.compile(r"[*_`]+")


def _labels_and_texts(choices: Choices | None) -> tuple[tuple[str, ...], dict[str, str]]:
    if choices is None:
        return DEFAULT_CHOICE_LABELS, {}
    if isinstance(choices, Mapping):
        return tuple(choices), dict(choices)
    return tuple(choices), {}


def _option_key(text: str) -> str:
    return " ".join(re.sub(r"[^\w\s]", " ", _plain(text)).split())


def extract_choice(answer: str, choices: Choices | None = None) -> str | None:
    """The choice label an answer picks, or None when it picks none (or several).

    ``choices``: the labels (``["A", "B"]``) or labels with their option texts
    (``{"A": "Ian", "B": "Dennis"}``); default A-E. Recognised: a bare label
    (``B``, ``(B)``, ``B)``, ``**B**``, ``['B']``), a label opening the answer (``B) Dennis``,
    ``B. because...``), ``answer is B`` / ``Answer: (B)`` / ``option B``, and, when option
    texts are given, the option text itself (``Dennis``), a unique prefix of it of three
    or more characters (a truncated ``Denn``), or exactly one option named in the answer.
    """
    labels, texts = _labels_and_texts(choices)
    if not labels:
        return None
    text = _MARKDOWN.sub("", unicodedata.normalize("NFKC", answer).translate(_QUOTES)).strip()
    # Some APIs hand back a JSON/Python list of one string: ['B'].
    text = re.sub(r"^\[\s*['\"]?(.*?)['\"]?\s*\]$", r"\1", text, flags=re.S).strip()
    if not text:
        return None
    alternatives = "|".join(re.escape(label) for label in sorted(labels, key=len, reverse=True))
    # A bare label: lower case accepted only here, where it cannot be the article "a".
    bare = re.fullmatch(rf"[(\[]?({alternatives})[)\].:]?", text, flags=re.I)
    if bare is not None:
        return _canonical(bare.group(1), labels)
    opening = re.match(rf"[(\[]?({alternatives})(?:[)\]:]|\.(?=\s|$)|\s+[-(])", text)
    # "b) Dennis": a closing parenthesis marks a label whatever its case.
    opening = opening or re.match(rf"\(?({alternatives})\)", text, flags=re.I)
    if opening is not None:
        return _canonical(opening.group(1), labels)
    stated = re.search(
        rf"\b(?:answer|option|choice)\b(?:\s+is)?\s*[:\-]?\s*[(\[]?({alternatives})(?!\w)",
        text,
        flags=re.I,
    )
    if stated is not None and stated.group(1) in labels:
        return stated.group(1)
    if texts:
        return _choice_by_text(text, texts)
    return None


def _canonical(found: str, labels: Sequence[str]) -> str | None:
    for label in labels:
        if label == found:
            return label
    matches = [label for label in labels if label.casefold() == found.casefold()]
    return matches[0] if len(matches) == 1 else None


def _choice_by_text(text: str, texts: Mapping[str, str]) -> str | None:
    key = _option_key(text)
    if not key:
        return None
    options = {label: _option_key(option) for label, option in texts.items()}
    exact = [label for label, option in options.items() if option and option == key]
    if len(exact) == 1:
        return exact[0]
    if len(key) >= 3:
        prefixed = [label for label, option in options.items() if option.startswith(key)]
        if len(prefixed) == 1:
            return prefixed[0]
    named = [
        label
        for label, option in options.items()
        if option and re.search(rf"(?<!\w){re.escape(option)}(?!\w)", key)
    ]
    return named[0] if len(named) == 1 else None


# --- free-form normalisation --------------------------------------------------------

_ANSWER_PREFIX = re.compile(
    r"^(?:so,?\s+)?(?:the\s+)?(?:final\s+|correct\s+)?answer\s*(?:is|:)\s*", re.I
)
_NUMBER = re.compile(r"[-+]?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?")


def normalise_answer(answer: str) -> str:
    """A comparison key for a free-form answer: case, quotes, markdown, spacing, an
    "The answer is" preamble, surrounding punctuation and number formatting (``1,000``,
    ``1000.0``, ``$1000``) do not count. Longer prose still has to match word for word,
    which is why disagreement is most useful on short, closed-form answers."""
    text = _MARKDOWN.sub("", _plain(answer)).strip()
    text = text.replace("```", " ")
    text = _ANSWER_PREFIX.sub("", text)
    text = text.strip(" \t\n.,;:!?\"'()[]{}")
    bare = text.lstrip("$\u20ac\u00a3").rstrip("%")
    if _NUMBER.fullmatch(bare):
        value = float(bare.replace(",", ""))
        return repr(int(value)) if value.is_integer() else repr(value)
    return " ".join(text.split())


def answers_agree(first: str, second: str, choices: Choices | None = None) -> bool:
    """Whether two answers say the same thing.

    With ``choices``, both must pick the same choice (an answer picking none cannot be
    said to agree). Without, two answers that both read as a choice among A-E compare by
    choice ("B" and "(B) Dennis" agree); otherwise their normalised texts compare.
    """
    if choices is not None:
        one, two = extract_choice(first, choices), extract_choice(second, choices)
        return one is not None and one == two
    one, two = extract_choice(first), extract_choice(second)
    if one is not None and two is not None:
        return one == two
    return normalise_answer(first) == normalise_answer(second)


# --- the check ----------------------------------------------------------------------


def _check_inputs(confidence: float | None, logprobs: Sequence[float] | None) -> None:
    if confidence is not None and not (
        isinstance(confidence, (int, float)) and 0 <= confidence <= 1
    ):
        raise InputError(f"confidence must be a number from 0 to 1, got {confidence!r}")
    if logprobs is not None:
        for i, value in enumerate(logprobs):
            if not isinstance(value, (int, float)) or math.isnan(value) or value > 0:
                raise InputError(
                    f"logprobs[{i}] must be a log-probability (a number <= 0), got {value!r}"
                )


def check_answer(
    answer: str,
    settings: EscalationSettings,
    *,
    confidence: float | None = None,
    logprobs: Sequence[float] | None = None,
    finish_reason: str | None = None,
    second_answer: str | None = None,
    choices: Choices | None = None,
    second_answer_required: str | None = None,
) -> EscalationCheck:
    """Decide whether ``answer`` should be escalated, from every signal that applies.

    ``second_answer_required`` names the model a cascade plan asked for a second opinion:
    without ``second_answer`` the answer escalates (``missing_second_answer``), since the
    plan counted on the comparison. Raises ``InputError`` for a confidence outside 0..1 or
    a log-probability above 0.
    """
    _check_inputs(confidence, logprobs)
    found: dict[Reason, str] = {}
    skipped: list[str] = []
    empty = is_empty(answer)

    if settings.empty and empty:
        found["empty"] = "the answer is empty" if not answer.strip() else "no words in the answer"
    if settings.truncated:
        why = truncation(answer, finish_reason, settings.truncation_min_words)
        if why is not None:
            found["truncated"] = why
    # Phrase and choice checks mean nothing on an empty answer: "empty" says it all.
    if settings.refusal and not empty:
        phrase = find_phrase(answer, settings.refusal_phrases + settings.extra_refusal_phrases)
        if phrase is not None:
            found["refusal"] = f"refusal phrase {phrase!r}"
    if settings.hedge and not empty:
        phrase = find_phrase(answer, settings.hedge_phrases + settings.extra_hedge_phrases)
        if phrase is None and len(answer.split()) <= settings.short_hedge_max_words:
            phrase = find_phrase(answer, settings.short_hedge_phrases)
        if phrase is not None:
            found["hedge"] = f"hedge phrase {phrase!r}"
    if settings.no_choice and choices is not None and not empty:
        labels, _ = _labels_and_texts(choices)
        if extract_choice(answer, choices) is None:
            found["no_choice"] = f"the answer picks none of the choices {', '.join(labels)}"

    threshold = settings.min_self_confidence
    if threshold is not None:
        if confidence is None:
            skipped.append("low_self_confidence (no confidence given)")
        elif confidence < threshold:
            found["low_self_confidence"] = f"self-rated confidence {confidence:g} < {threshold:g}"
    floor = settings.min_mean_logprob
    if floor is not None:
        if not logprobs:
            skipped.append("low_logprob (no logprobs given)")
        else:
            mean = math.fsum(logprobs) / len(logprobs)
            if mean < floor:
                found["low_logprob"] = (
                    f"mean token log-probability {mean:.3f} < {floor:g} over {len(logprobs)} tokens"
                )
    if second_answer_required is not None and second_answer is None:
        found["missing_second_answer"] = (
            f"the cascade plan asks {second_answer_required} for a second answer; none given"
        )
    elif settings.disagreement or second_answer_required is not None:
        if second_answer is None:
            skipped.append("disagreement (no second answer given)")
        elif not answers_agree(answer, second_answer, choices):
            found["disagreement"] = "a second answer " + (
                "picks another choice"
                if _reads_as_choice(answer, second_answer, choices)
                else "says something else"
            )

    reasons = [reason for reason in REASONS if reason in found]
    if reasons:
        detail = "escalate: " + "; ".join(f"{r} ({found[r]})" for r in reasons)
    else:
        detail = "keep the answer: no signal fired"
        if skipped:
            detail += "; not checked: " + ", ".join(skipped)
    return EscalationCheck(escalate=bool(reasons), reasons=reasons, detail=detail)


def _reads_as_choice(first: str, second: str, choices: Choices | None) -> bool:
    return extract_choice(first, choices) is not None or extract_choice(second, choices) is not None


# --- where to escalate to -----------------------------------------------------------


def _known_model(config: RouterConfig, model_name: str) -> str:
    try:
        return config.model(model_name).tier
    except KeyError:
        known = ", ".join(m.name for m in config.models)
        raise InputError(f"unknown model {model_name!r}; router.yaml defines {known}") from None


def next_tier_model(config: RouterConfig, model_name: str, input_tokens: int) -> str | None:
    """The cheapest general model of the tier above ``model_name``'s; None at the top.

    Raises ``InputError`` for a model the config does not define.
    """
    from .policy import cheapest_in_tier  # lazily: policy imports config, config imports us

    tier = _known_model(config, model_name)
    position = config.tiers.index(tier)
    if position + 1 >= len(config.tiers):
        return None
    tier_above = config.tiers[position + 1]
    output_tokens = config.cost.expected_output_tokens
    return cheapest_in_tier(config, tier_above, input_tokens, output_tokens).name


def stronger_model(
    config: RouterConfig, model_name: str, candidates: Sequence[str], input_tokens: int
) -> str | None:
    """The first of ``candidates`` (a decision's model and fallbacks, in order) on a
    stronger tier than ``model_name``'s, else :func:`next_tier_model`."""
    tiers = config.tiers
    rank = tiers.index(_known_model(config, model_name))
    for name in candidates:
        try:
            tier = config.model(name).tier
        except KeyError:
            continue
        if tiers.index(tier) > rank:
            return name
    return next_tier_model(config, model_name, input_tokens)
