"""Thresholds of `modeltriage lint`: when an intent set's exemplars are flagged. Part of
the router config (``lint`` in router.yaml); the checks live in
:mod:`modeltriage.learn.lint`. Every threshold is optional: ``null`` turns its check off."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, model_validator


class LintSettings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    min_loo_accuracy: float | None = Field(
        default=0.9,
        ge=0,
        le=1,
        description="error when leave-one-out accuracy (each exemplar routed against all "
        "the others) is below this",
    )
    duplicate_cosine: float | None = Field(
        default=0.95,
        ge=-1,
        le=1,
        description="two exemplars this similar are near-duplicates: an error across "
        "intents (the same request labelled twice), a warning within one",
    )
    min_exemplars: int | None = Field(
        default=5, ge=1, description="warn about an intent with fewer exemplars"
    )
    overlap_share: float | None = Field(
        default=0.15,
        gt=0,
        le=1,
        description="warn about two intents when this share of their exemplars has its "
        "nearest other exemplar in the other intent",
    )
    min_cohesion: float | None = Field(
        default=0.3,
        ge=-1,
        le=1,
        description="warn when an intent's exemplars are spread out: their mean cosine to "
        "the intent's centroid is below this",
    )
    max_cohesion: float | None = Field(
        default=0.9,
        ge=-1,
        le=1,
        description="warn when an intent's exemplars are too tight (near paraphrases of "
        "one request): their mean cosine to the centroid is above this",
    )
    conflict_cosine: float | None = Field(
        default=0.85,
        ge=-1,
        le=1,
        description="warn when two exemplars of one intent this similar have different "
        "difficulties",
    )

    @model_validator(mode="after")
    def _cohesion_order(self) -> LintSettings:
        low, high = self.min_cohesion, self.max_cohesion
        if low is not None and high is not None and high <= low:
            raise ValueError(f"max_cohesion ({high}) must be above min_cohesion ({low})")
        return self
