"""`modeltriage eval outcomes` as one call: read the outcomes files (pricing them when
asked), set the test rows apart, and score the learned router, or the learned serving
plans against the baselines, on them."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from modeltriage.core.encoders import Encoder
from modeltriage.errors import InputError
from modeltriage.learn.outcome_compare import Comparison, compare_plans
from modeltriage.learn.outcome_data import OutcomeRow, read_outcomes_jsonl
from modeltriage.learn.outcome_eval import OutcomesReport, evaluate_outcomes
from modeltriage.learn.outcome_intents import GroupBy, parse_tiers
from modeltriage.learn.outcome_margin import Z_DEFAULT
from modeltriage.learn.outcome_prices import priced_rows, read_prices
from modeltriage.learn.planlearning import plan_tiers
from modeltriage.learn.splits import seeded_split


def tiers_with_flagship(spec: str, flagship: str | None = None) -> list[tuple[str, str]]:
    """``--tiers`` parsed; ``flagship``, when given, must be the last tier's model."""
    tiers = parse_tiers(spec)
    if flagship is not None and flagship != tiers[-1][1]:
        raise InputError(f"--flagship {flagship} must be the last of --tiers")
    return tiers


def read_priced(path: Path, prices: Path | None) -> list[OutcomeRow]:
    """The rows of ``path``, every outcome costed: a model without costs is a one-line
    error naming it, unless ``prices`` (a price list) estimates them."""
    return priced_rows(
        read_outcomes_jsonl(path), None if prices is None else read_prices(prices), path
    )


def plan_tiers_of(
    rows: list[OutcomeRow], tiers: str | None, flagship: str | None
) -> list[tuple[str, str]]:
    """``--tiers`` (with ``--flagship`` its last) or, with ``--flagship`` alone, a
    cheap tier and the flagship's (:func:`plan_tiers`)."""
    if tiers is not None:
        parsed = tiers_with_flagship(tiers, flagship)
    elif flagship is None:
        raise InputError("give --flagship MODEL (or --tiers)")
    else:
        parsed = plan_tiers(rows, flagship)
    known = set().union(*(r.outcomes for r in rows))
    unknown = [m for _, m in parsed if m not in known]
    if unknown:
        raise InputError(f"no outcomes for {', '.join(unknown)}")
    return parsed


def train_test_rows(
    train: Path, test: Path | None, held_out: float = 0.3, seed: int = 0
) -> tuple[list[OutcomeRow], list[OutcomeRow]]:
    """The rows to learn from and to score on: ``test``'s rows when given, else a
    ``held_out`` share of ``train``'s, split by ``seed``."""
    rows = read_outcomes_jsonl(train)
    if test is not None:
        return rows, read_outcomes_jsonl(test)
    if not 0 < held_out < 1:
        raise InputError("--held-out must be between 0 and 1")
    return seeded_split(rows, held_out, seed)


def evaluate_outcome_files(
    train: Path,
    test: Path | None,
    tiers: str | None,
    encoder: Callable[[], Encoder],
    *,
    flagship: str | None = None,
    held_out: float = 0.3,
    seed: int = 0,
    good: float = 0.5,
    long_text: str = "tail",
    group_by: GroupBy = "task",
    clusters: int | None = None,
    plans: bool = False,
    floor: float = 0.98,
    candidates: int = 3,
    agree: int = 3,
    margin_z: float = Z_DEFAULT,
    seeds: int = 5,
    prices: Path | None = None,
) -> OutcomesReport | Comparison:
    """Score routing learned from ``train`` on ``test`` (or on rows held out of
    ``train``): the router's difficulty sweep (:func:`evaluate_outcomes`), or with
    ``plans`` the serving plans at ``floor`` of the flagship's quality against the
    baselines on ``seeds`` splits from ``seed`` on (:func:`compare_plans`). ``encoder``
    is called once the inputs are known good, so a mistyped argument fails before a
    model loads; ``seed`` splits and clusters."""
    if plans:
        rows = read_priced(train, prices)
        test_rows = None if test is None else read_priced(test, prices)
        if seeds < 1:
            raise InputError("--seeds must be at least 1")
        return compare_plans(
            rows,
            test_rows,
            plan_tiers_of(rows, tiers, flagship),
            encoder(),
            seeds=range(seed, seed + seeds),
            held_out=held_out,
            floor=floor,
            candidates=candidates,
            agree=agree,
            margin_z=margin_z,
            good=good,
            long_text=long_text,
            group_by=group_by,
            clusters=clusters,
        )
    if tiers is None:
        raise InputError("--tiers is needed (or --plans with --flagship)")
    tier_models = tiers_with_flagship(tiers, flagship)
    train_rows, test_rows2 = train_test_rows(train, test, held_out, seed)
    return evaluate_outcomes(
        train_rows,
        test_rows2,
        tier_models,
        encoder(),
        good=good,
        long_text=long_text,
        group_by=group_by,
        clusters=clusters,
        seed=seed,
    )
