"""Labelled-data evaluation: how well does routing find the intent, and what does it cost?

:func:`evaluate_intents` embeds every text once, builds routers over the training rows
with ``Router.in_memory``, routes the test rows, and scores the router beside two
baselines: plain top-1 nearest neighbour (``max``, ``top_k`` 1, same ``min_similarity``)
and always-flagship (cost only). The metrics live in :mod:`intent_metrics`, the choice
of ``min_similarity`` in :mod:`min_similarity`, the terminal view in :mod:`eval_report`.

Every intent built from labelled data has the same difficulty, so all intents share one
tier and a low-margin cascade never changes the predicted intent: the prediction is
``decision.intent`` (``None`` for ``no_match``).
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from modeltriage.core.config import Aggregation, RouterConfig, Scoring
from modeltriage.core.costs import cheapest_in_tier
from modeltriage.core.decision import Decision, Verdict
from modeltriage.core.encoders import Encoder
from modeltriage.core.inputs import check_text
from modeltriage.core.intents import Intent, IntentSet
from modeltriage.core.oos_score import OosScore
from modeltriage.core.policy import decide
from modeltriage.errors import EvaluationError, ModelTriageError
from modeltriage.learn.datasets import LabelledText, intent_set_from_labelled
from modeltriage.learn.embedding_cache import CachingEncoder
from modeltriage.learn.intent_metrics import CostSummary, Scores, cost_summary, score
from modeltriage.learn.min_similarity import (
    HELD_OUT_SHARE,
    MinSimilarityTuning,
    exemplar_texts,
    tune_min_similarity,
)
from modeltriage.learn.splits import split_by_intent
from modeltriage.router import Router, route_all

# Where the evaluated router's min_similarity came from. "--floor" is the historical
# spelling of the flag (now also --min-similarity), kept because reports record it.
SOURCE_GIVEN = "--floor"
SOURCE_CONFIG = "config"
SOURCE_TUNED = "tuned"

# The report's JSON keeps the names it was first published with.
_JSON_KEYS = {
    "min_similarity": "floor",
    "min_similarity_source": "floor_source",
    "min_similarity_tuning": "floor_tuning",
}


@dataclass(frozen=True)
class EvalOptions:
    """How :func:`evaluate_intents` builds its routers; None keeps the config's value.

    ``per_intent`` exemplars are sampled with ``seed`` (default: every training row);
    ``min_similarity`` is given, or chosen with ``tune_min_similarity``, not both.
    """

    per_intent: int | None = None
    seed: int = 0
    top_k: int | None = None
    aggregation: Aggregation | None = None
    min_similarity: float | None = None
    tune_min_similarity: bool = False
    progress: bool = True


@dataclass(frozen=True)
class PolicyResult:
    name: str
    aggregation: Aggregation
    top_k: int
    scores: Scores
    cost: CostSummary


@dataclass(frozen=True)
class IntentEvaluation:
    exemplars: int
    intents: int
    per_intent: int | None
    seed: int
    train_rows: int
    train_out_of_scope_rows: int
    margin: float | None
    min_similarity: float | None
    min_similarity_source: str
    min_similarity_tuning: MinSimilarityTuning | None
    router: PolicyResult
    top1: PolicyResult
    flagship_model: str
    flagship_total_usd: float
    embedded_texts: int
    seconds: float
    # {intent name: the dataset's label} of labels that were not valid intent names.
    renamed_labels: dict[str, str] = field(default_factory=dict)
    adapter: str = "off"  # the index's adapter (Manifest.adapter)

    def as_dict(self) -> dict[str, Any]:
        """The JSON report, under its published keys (``floor``, ``floor_source`` and
        ``floor_tuning`` hold the min_similarity figures)."""
        data = {_JSON_KEYS.get(key, key): value for key, value in asdict(self).items()}
        tuning = data["floor_tuning"]
        if tuning is not None:
            tuning["floor"] = tuning.pop("min_similarity")
        return data


def with_policy(
    config: RouterConfig,
    *,
    top_k: int | None = None,
    aggregation: Aggregation | None = None,
    min_similarity: float | None = None,
    no_min_similarity: bool = False,
) -> RouterConfig:
    """``config`` with the scoring and ``min_similarity`` overridden where given
    (validated); ``no_min_similarity`` removes the threshold."""
    scoring = Scoring.model_validate(
        config.scoring.model_dump()
        | ({} if top_k is None else {"top_k": top_k})
        | ({} if aggregation is None else {"aggregation": aggregation})
    )
    thresholds = config.thresholds
    if no_min_similarity or min_similarity is not None:
        thresholds = type(thresholds).model_validate(
            thresholds.model_dump()
            | {"min_similarity": None if no_min_similarity else min_similarity}
        )
    return config.model_copy(update={"scoring": scoring, "thresholds": thresholds})


def first_refused(rows: Sequence[LabelledText], max_bytes: int) -> tuple[int, str] | None:
    """Index of the first row the router would refuse to route (``limits.max_text_bytes``,
    lone surrogates) and why, or None: found before embedding, not minutes into routing."""
    for position, row in enumerate(rows):
        try:
            check_text(row.text, max_bytes)
        except ModelTriageError as exc:
            return position, str(exc)
    return None


def _build_set(
    rows: Sequence[LabelledText], config: RouterConfig, per_intent: int | None, seed: int
) -> IntentSet:
    intent_set = intent_set_from_labelled(rows, config, per_intent=per_intent, seed=seed)
    if not intent_set.intents:
        raise EvaluationError("the training rows have no in-scope row (every intent is null)")
    return intent_set


def _check_options(test: Sequence[LabelledText], options: EvalOptions) -> None:
    if not test:
        raise EvaluationError("the test set has no rows")
    if options.min_similarity is not None and options.tune_min_similarity:
        raise EvaluationError("give min_similarity or ask to tune it, not both")


def _check_routable(
    train: Sequence[LabelledText],
    test: Sequence[LabelledText],
    config: RouterConfig,
    options: EvalOptions,
) -> None:
    # Held-out training rows are routed too when min_similarity is tuned.
    tuned = options.tune_min_similarity
    for name, rows in (("test", test), ("training", train if tuned else [])):
        refused = first_refused(rows, config.limits.max_text_bytes)
        if refused is not None:
            raise EvaluationError(f"{name} row {refused[0] + 1} cannot be routed: {refused[1]}")


def _tuning_rows(
    train: Sequence[LabelledText], config: RouterConfig, options: EvalOptions
) -> tuple[IntentSet, list[LabelledText]]:
    """(intents built from the kept training rows, held-out rows) to tune min_similarity
    on: the router is built the same way as the evaluated one, without a threshold."""
    kept, held = split_by_intent(train, HELD_OUT_SHARE, options.seed)
    if not any(r.intent is None for r in held):
        raise EvaluationError(
            "tuning min_similarity needs out-of-scope rows (intent null) in the training "
            "rows: without them every threshold above 0 only loses in-scope rows"
        )
    untuned = with_policy(config, no_min_similarity=True)
    return _build_set(kept, untuned, options.per_intent, options.seed), held


def _top1_verdicts(
    decisions: Sequence[Decision],
    config: RouterConfig,
    intents: Mapping[str, Intent],
    oos_floor: float | None,
    oos_scores: Sequence[OosScore] | None = None,
) -> list[Verdict]:
    """Plain nearest neighbour from the router's own neighbours: nothing re-embedded.
    The index's calibrated out-of-scope floor applies as it does in the router (on
    ``oos_scores``, the router's, when the floor is on the combined score)."""
    scores: Sequence[OosScore | None] = (
        [None] * len(decisions) if oos_scores is None else oos_scores
    )
    return [
        decide(d.neighbours[:1], config, intents, d.input_tokens, oos_floor=oos_floor, oos_score=s)
        for d, s in zip(decisions, scores, strict=True)
    ]


def _policy_result(
    name: str,
    verdicts: Sequence[Verdict],
    policy: RouterConfig,
    test: Sequence[LabelledText],
) -> PolicyResult:
    return PolicyResult(
        name=name,
        aggregation=policy.scoring.aggregation,
        top_k=policy.scoring.top_k,
        scores=score(
            [r.intent for r in test], [v.intent for v in verdicts], [r.text for r in test]
        ),
        cost=cost_summary(verdicts, policy),
    )


def _route_and_score(
    router: Router, intent_set: IntentSet, test: Sequence[LabelledText]
) -> tuple[PolicyResult, PolicyResult]:
    """(the router's result, top-1 nearest neighbour's) on the test rows."""
    config = intent_set.config
    decisions = route_all(router, [r.text for r in test], explain=True)
    intents = {i.name: i for i in intent_set.intents}
    top1_config = with_policy(config, top_k=1, aggregation="max")
    oos_scores = router.out_of_scope_scores([r.text for r in test])
    baseline = _top1_verdicts(
        decisions, top1_config, intents, router.manifest.oos_floor, oos_scores
    )
    return (
        _policy_result("router", decisions, config, test),
        _policy_result("top-1 nearest neighbour", baseline, top1_config, test),
    )


def evaluate_intents(
    train: Sequence[LabelledText],
    test: Sequence[LabelledText],
    config: RouterConfig,
    encoder: Encoder,
    options: EvalOptions = EvalOptions(),
) -> IntentEvaluation:
    """Route every ``test`` row with a router whose exemplars are the ``train`` rows (all,
    or ``options.per_intent`` sampled with ``options.seed``), and score it against the
    baselines.

    ``min_similarity`` is ``options.min_similarity`` if given, else tuned when
    ``options.tune_min_similarity``, else the config's. Tuning holds out 20% of each
    intent's training rows plus every out-of-scope one, builds a router the same way
    (all, or ``per_intent``) from the rest, and picks the threshold on the held-out rows;
    the evaluated router then uses it with exemplars from all training rows. The test
    rows are never seen. Every text is embedded once, however many routers use it.
    """
    started = time.perf_counter()
    _check_options(test, options)
    config = with_policy(
        config,
        top_k=options.top_k,
        aggregation=options.aggregation,
        min_similarity=options.min_similarity,
    )
    _check_routable(train, test, config, options)
    final_set = _build_set(train, config, options.per_intent, options.seed)
    needed = [*exemplar_texts(final_set), *(r.text for r in test)]
    tuning_set: IntentSet | None = None
    held: list[LabelledText] = []
    if options.tune_min_similarity:
        tuning_set, held = _tuning_rows(train, config, options)
        needed += [*exemplar_texts(tuning_set), *(r.text for r in held)]

    cache = CachingEncoder(encoder, progress=options.progress)
    cache.embed(needed, f"embedding {len(set(needed)):,} texts")

    tuning = None
    source = SOURCE_CONFIG if options.min_similarity is None else SOURCE_GIVEN
    if tuning_set is not None:
        tuning = tune_min_similarity(tuning_set, held, cache)
        config = with_policy(config, min_similarity=tuning.min_similarity)
        final_set = final_set.model_copy(update={"config": config})
        source = SOURCE_TUNED

    router = Router.in_memory(final_set, cache)
    router_result, top1_result = _route_and_score(router, final_set, test)
    # The name only: which flagship model is cheapest can depend on a request's length,
    # so the flagship cost itself is priced request by request.
    output = config.cost.expected_output_tokens
    flagship = cheapest_in_tier(config, config.flagship_tier, 1, output)
    return IntentEvaluation(
        exemplars=router.manifest.exemplars,
        intents=router.manifest.intents,
        per_intent=options.per_intent,
        seed=options.seed,
        train_rows=len(train),
        train_out_of_scope_rows=sum(r.intent is None for r in train),
        margin=config.thresholds.margin,
        min_similarity=config.thresholds.min_similarity,
        min_similarity_source=source,
        min_similarity_tuning=tuning,
        router=router_result,
        top1=top1_result,
        flagship_model=flagship.name,
        flagship_total_usd=router_result.cost.flagship_total_usd,
        embedded_texts=cache.cached,
        adapter=router.manifest.adapter,
        seconds=round(time.perf_counter() - started, 1),
    )
