"""Answer-time cascade: should a cheap model's answer be escalated to a stronger model?

The router decides before anything is answered; this module looks at the answer once it
exists. ``check_answer`` is a pure function of the answer and whatever the caller knows
about it (a self-rated confidence, token log-probabilities, the finish reason, a second
cheap model's answer, the multiple-choice labels) and returns the signals that fired, as
stable machine codes, with a sentence a person can read.

"""

from __future__ import annotations

import math
import re
import unicodedata
from collections.abc import Mapping, Sequence
from functools import lru_cache
from typing import Annotated

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StrictFloat,
    StrictInt,
    StrictStr,
)

from modeltriage.core.config import RouterConfig
from modeltriage.core.costs import cheapest_in_tier
from modeltriage.core.escalation_settings import (
    DEFAULT_CHOICE_LABELS,
    LENGTH_FINISH_REASONS,
    SIGNALS,
    EscalationSettings,
    Signal,
)
from modeltriage.core.inputs import check_model
from modeltriage.core.options import CHOICES_CEILING, CallerInput, fits_a_float
from modeltriage.errors import InputError

Choices = Sequence[str] | Mapping[str, str]
LogProb = Annotated[
    StrictFloat | StrictInt, BeforeValidator(fits_a_float), Field(le=0, allow_inf_nan=False)
]


# Matching an answer against the choices costs choices x answer length: both are bounded
# (the count by limits.max_choices, checked by core.inputs.check_choices).
ChoiceLabel = Annotated[StrictStr, Field(min_length=1, max_length=64)]
ChoiceText = Annotated[StrictStr, Field(max_length=1000)]


class Answer(CallerInput):
    """A cheaper model's answer and what the caller knows about it: the input of an
    answer check (:meth:`Router.escalate`, ``POST /escalate``)."""

    answer: StrictStr = Field(description="the answer the cheap model gave")
    confidence: StrictFloat | StrictInt | None = Field(
        default=None, ge=0, le=1, description="the model's own 0..1 rating of its answer"
    )
    logprobs: Annotated[list[LogProb], Field(max_length=262_144)] | None = Field(
        default=None, description="the answer's token log-probabilities"
    )
    finish_reason: StrictStr | None = Field(
        default=None, max_length=64, examples=["stop", "length"]
    )
    second_answer: StrictStr | None = Field(
        default=None, description="a second cheap model's answer to the same request"
    )
    more_answers: Annotated[list[StrictStr], Field(max_length=8)] | None = Field(
        default=None,
        description="the answers of a plan's `also_agree` models, in its order (with "
        "`second_answer`): escalate unless every one agrees with the answer",
    )
    choices: (
        Annotated[list[ChoiceLabel], Field(max_length=CHOICES_CEILING)]
        | Annotated[dict[ChoiceLabel, ChoiceText], Field(max_length=CHOICES_CEILING)]
        | None
    ) = Field(
        default=None,
        description="multiple-choice labels, or labels with option texts: the answer must "
        "pick one, and a second answer is compared by the choice picked; at most "
        "limits.max_choices (default 26), a label "
        "at most 64 characters, an option text at most 1000",
        examples=[["A", "B", "C", "D"], {"A": "Ian", "B": "Dennis"}],
    )


class EscalationCheck(BaseModel):
    """The verdict on one answer."""

    model_config = ConfigDict(frozen=True)

    escalate: bool
    reasons: list[Signal] = Field(description="signals that fired, in a fixed order")
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
    # Keys are words joined by single spaces, so a whole-word match is a substring match
    # with spaces around: linear time, where a regex per option took seconds on long
    # answers.
    spaced = f" {key} "
    named = [label for label, option in options.items() if option and f" {option} " in spaced]
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


def _answer_signals(
    answer: str, settings: EscalationSettings, finish_reason: str | None, choices: Choices | None
) -> dict[Signal, str]:
    """The signals read off the answer's text alone, with why each fired."""
    found: dict[Signal, str] = {}
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
    return found


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
    more_answers: Sequence[str] = (),
) -> EscalationCheck:
    """Decide whether ``answer`` should be escalated, from every signal that applies.

    ``second_answer_required`` names the model a cascade plan asked for a second opinion:
    without ``second_answer`` the answer escalates (``missing_second_answer``), since the
    plan counted on the comparison. ``more_answers`` (a plan's ``also_agree`` models'
    answers) must agree with ``answer`` too; they count only beside a ``second_answer``.
    Raises ``InputError`` for a confidence outside 0..1 or a log-probability above 0.
    """
    _check_inputs(confidence, logprobs)
    found = _answer_signals(answer, settings, finish_reason, choices)
    skipped: list[str] = []

    threshold = settings.min_self_confidence
    if threshold is not None:
        if confidence is None:
            skipped.append("low_self_confidence (no confidence given)")
        elif confidence < threshold:
            found["low_self_confidence"] = f"self-rated confidence {confidence:g} < {threshold:g}"
    min_logprob = settings.min_mean_logprob
    if min_logprob is not None:
        if not logprobs:
            skipped.append("low_logprob (no logprobs given)")
        else:
            mean = math.fsum(logprobs) / len(logprobs)
            if mean < min_logprob:
                found["low_logprob"] = (
                    f"mean token log-probability {mean:.3f} < {min_logprob:g} "
                    f"over {len(logprobs)} tokens"
                )
    if second_answer_required is not None and second_answer is None:
        found["missing_second_answer"] = (
            f"the cascade plan asks {second_answer_required} for a second answer; none given"
        )
    elif settings.disagreement or second_answer_required is not None:
        if second_answer is None:
            skipped.append("disagreement (no second answer given)")
        else:
            others = [second_answer, *more_answers]
            differ = [b for b in others if not answers_agree(answer, b, choices)]
            if differ:
                who = "a second answer" if len(others) == 1 else f"{len(differ)} of "
                who += "" if len(others) == 1 else f"{len(others)} other answers"
                found["disagreement"] = f"{who} " + (
                    "picks another choice"
                    if _reads_as_choice(answer, differ[0], choices)
                    else "says something else"
                )

    reasons = [reason for reason in SIGNALS if reason in found]
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


def next_tier_model(config: RouterConfig, model_name: str, input_tokens: int) -> str | None:
    """The cheapest general model of the tier above ``model_name``'s; None at the top.

    Raises ``InputError`` for a model the config does not define.
    """
    tier = check_model(config, model_name).tier
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
    rank = tiers.index(check_model(config, model_name).tier)
    for name in candidates:
        try:
            tier = config.model(name).tier
        except KeyError:
            continue
        if tiers.index(tier) > rank:
            return name
    return next_tier_model(config, model_name, input_tokens)
