"""`modeltriage eval outcomes` as one call: read the outcomes files, set the test rows
apart, and score the learned router, or the learned serving plans, on them."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from modeltriage.core.encoders import Encoder
from modeltriage.errors import InputError
from modeltriage.learn.outcome_data import OutcomeRow, read_outcomes_jsonl
from modeltriage.learn.outcome_eval import OutcomesReport, evaluate_outcomes
from modeltriage.learn.outcome_intents import GroupBy, parse_tiers
from modeltriage.learn.planlearning import PlansReport, evaluate_plans
from modeltriage.learn.splits import seeded_split


def tiers_with_flagship(spec: str, flagship: str | None = None) -> list[tuple[str, str]]:
    """``--tiers`` parsed; ``flagship``, when given, must be the last tier's model."""
    tiers = parse_tiers(spec)
    if flagship is not None and flagship != tiers[-1][1]:
        raise InputError(f"--flagship {flagship} must be the last of --tiers")
    return tiers


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
    tiers: str,
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
) -> OutcomesReport | PlansReport:
    """Score routing learned from ``train`` on ``test`` (or on rows held out of
    ``train``): the router's difficulty sweep (:func:`evaluate_outcomes`), or with
    ``plans`` the serving plans kept at ``floor`` of the flagship's quality
    (:func:`evaluate_plans`). ``encoder`` is called once the inputs are known good, so a
    mistyped argument fails before a model loads; ``seed`` splits and clusters."""
    tier_models = tiers_with_flagship(tiers, flagship)
    train_rows, test_rows = train_test_rows(train, test, held_out, seed)
    if plans:
        return evaluate_plans(
            train_rows,
            test_rows,
            tier_models,
            encoder(),
            floor=floor,
            candidates=candidates,
            good=good,
            long_text=long_text,
            group_by=group_by,
            clusters=clusters,
            seed=seed,
        )
    return evaluate_outcomes(
        train_rows,
        test_rows,
        tier_models,
        encoder(),
        good=good,
        long_text=long_text,
        group_by=group_by,
        clusters=clusters,
        seed=seed,
    )
