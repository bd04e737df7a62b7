"""Settings of the answer-time check: which signals escalate a cheap answer, with what
thresholds and phrases. Part of the router config (``escalation`` in router.yaml); the
check itself lives in :mod:`modeltriage.followup.answers`."""

from __future__ import annotations

from typing import Annotated, Literal, get_args

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

Signal = Literal[
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
# The order signals are reported in, whatever order they were found in: the Literal's.
SIGNALS: tuple[Signal, ...] = get_args(Signal)

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
