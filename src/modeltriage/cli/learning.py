"""The run functions of the commands that learn from data: `learn` (intents from
outcomes) and `tune` (cascade thresholds from labelled texts, outcomes or the log).

Each takes the parsed arguments and an injected encoder (None: the real one) and returns
the exit status; the library does the work, these parse, call and print.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from modeltriage.errors import InputError

if TYPE_CHECKING:
    from modeltriage.core.encoders import Encoder
    from modeltriage.learn.tuning import TuneResult
    from modeltriage.learn.tuning_cases import TuningCases
    from modeltriage.router import Router


def _real_encoder(encoder: Encoder | None) -> Encoder:
    from modeltriage.core.encoders import SentenceTransformerEncoder

    return SentenceTransformerEncoder() if encoder is None else encoder


def run_learn(args: argparse.Namespace, encoder: Encoder | None) -> int:
    from collections import Counter

    from modeltriage.learn.outcome_data import read_outcomes_jsonl
    from modeltriage.learn.outcome_intents import (
        group_names,
        learn_intents,
        learned_config,
        needs_clustering,
        parse_tiers,
        write_intents_dir,
    )

    if args.plans:
        return _learn_plans(args, encoder)
    if args.tiers is None:
        raise InputError("learn needs --tiers (or --plans with --flagship)")
    tiers = parse_tiers(args.tiers)
    rows = read_outcomes_jsonl(args.outcomes)
    known = set().union(*(r.outcomes for r in rows))
    unknown = [m for _, m in tiers if m not in known]
    if unknown:
        raise InputError(f"--tiers: {args.outcomes} has no outcomes for {unknown}")
    config = learned_config(rows, tiers)
    groups = None
    if needs_clustering(rows, args.group_by):
        groups = group_names(
            rows,
            _real_encoder(encoder),
            config.scoring,
            args.group_by,
            args.clusters,
            args.seed,
        )
    intents, skipped = learn_intents(rows, tiers, good=args.good, groups=groups)
    header = (
        f"Learned by `modeltriage learn {args.outcomes} --tiers {args.tiers}`.\n"
        "Each exemplar's difficulty is the cheapest tier whose model answered it well."
    )
    write_intents_dir(args.out, config, intents, header)
    counts = Counter(intent.exemplar_difficulty(e) for intent in intents for e in intent.exemplars)
    total = sum(counts.values())
    print(
        f"wrote {len(intents)} intents, {total} exemplars to {args.out} ({skipped} rows "
        "skipped: repeated or without outcomes for a tier model)"
    )
    print("difficulty: " + ", ".join(f"{d} {counts[d]}" for d in ("easy", "moderate", "hard")))
    print(f"next: modeltriage build --intents {args.out}")
    return 0


def _learn_plans(args: argparse.Namespace, encoder: Encoder | None) -> int:
    from modeltriage.cli.outcomes import cached_real_encoder, checked_margin_z
    from modeltriage.learn.outcome_files import plan_tiers_of, read_priced
    from modeltriage.learn.outcome_intents import write_intents_dir
    from modeltriage.learn.planlearning import learn_plans

    if args.margin is not None and not (0 <= args.margin < 100):
        raise InputError(f"--margin must be from 0 to 100 standard errors, got {args.margin}")
    margin_z = checked_margin_z(args.margin_z)
    rows = read_priced(args.outcomes, args.prices)
    tiers = plan_tiers_of(rows, args.tiers, args.flagship)
    learned = learn_plans(
        rows,
        tiers,
        # Plans are chosen on the prompts the router would send each intent: that needs
        # the prompts' vectors (kept in the cache directory across runs).
        cached_real_encoder() if encoder is None else encoder,
        floor=args.floor,
        candidates=args.candidates,
        agree=args.agree,
        group_by=args.group_by,
        clusters=args.clusters,
        seed=args.seed,
        margin=args.margin,
        margin_z=margin_z,
    )
    flagship = tiers[-1][1]
    margin = args.margin if learned.margin is None else learned.margin.margin
    how = (
        "given"
        if learned.margin is None
        else f"learned by 5-fold cross-validation, {learned.margin.repeats} deals, held-out "
        f"quality less {learned.margin.z:g} standard errors"
    )
    kinds = (
        "one model, or a model checked by other models that must all agree"
        if learned.answers
        else ("or one model (the file has no `responses`, so no plan checks answers)")
    )
    header = (
        f"Learned by `modeltriage learn {args.outcomes} --plans --flagship {flagship} "
        f"--floor {args.floor:g}`.\nEach intent says how its requests are served: the "
        f"flagship, {kinds}. Safety margin {margin:g} standard errors ({how})."
    )
    write_intents_dir(args.out, learned.config, learned.intents, header)
    choice = learned.choice
    print(
        f"wrote {len(learned.intents)} intents to {args.out} from {learned.rows} prompts "
        f"({learned.skipped} skipped: no outcome for {flagship}); on those prompts the plans "
        f"keep {100 * choice.quality_share:.1f}% of {flagship}'s quality at "
        f"{100 * choice.savings:.1f}% savings; safety margin {margin:g} ({how})"
    )
    if learned.vote_accuracy is not None:
        print(
            f"each intent's plan is chosen on the prompts the router sends it: "
            f"{100 * learned.vote_accuracy:.1f}% of prompts are voted into their own "
            "intent (each routed against the others)"
        )
    if learned.gaps:
        print(
            "prompts without an outcome (each model judged where known, never as 0): "
            + ", ".join(f"{m} {n}" for m, n in learned.gaps.items())
        )
    for intent in learned.intents:
        print(f"  {intent.name}: {intent.description}")
    print(
        "these figures are on the prompts the plans were chosen on; held out: "
        "modeltriage eval outcomes --plans"
    )
    print(f"next: modeltriage build --intents {args.out}")
    return 0


def _log_cases(args: argparse.Namespace, router: Router) -> TuningCases:
    from modeltriage.learn.tuning_cases import sampled_log_cases
    from modeltriage.log.open import open_store
    from modeltriage.log.sample import sample_log
    from modeltriage.log.urls import configured_log_url

    url = configured_log_url(router.config.log, args.intents, args.url or None)
    if url is None:
        raise InputError("--log: decision logging is off (no log.url in router.yaml, no --url)")
    if args.sample < 1:
        raise InputError(f"--sample must be at least 1, got {args.sample}")
    store = open_store(url)
    try:
        # Every logged text is re-routed: a large log is tuned on a seeded sample of it.
        sample = sample_log(store, args.sample, args.seed)
        events = store.events() if args.learn_cascade else None
    finally:
        store.close()
    return sampled_log_cases(router, sample, store.url, events)


def _tuning_cases(args: argparse.Namespace, router: Router) -> TuningCases:
    from modeltriage.learn.tuning_cases import labelled_cases, outcomes_cases

    if args.labelled is not None:
        return labelled_cases(router, args.labelled)
    if args.outcomes is not None:
        return outcomes_cases(router, args.outcomes)
    return _log_cases(args, router)


def run_tune(args: argparse.Namespace, encoder: Encoder | None) -> int:
    from modeltriage.learn.tuning import tune
    from modeltriage.learn.tuning_report import plot
    from modeltriage.router import Router

    if sum((args.labelled is not None, args.log, args.outcomes is not None)) != 1:
        raise InputError("tune needs one source: --labelled FILE, --outcomes FILE or --log")
    if args.learn_cascade and not args.log:
        raise InputError("--learn-cascade needs --log (checked answers are in the decision log)")
    router = Router.load(args.intents, encoder=encoder, build_if_needed=True, log=False)
    found = _tuning_cases(args, router)
    try:
        result = tune(
            found.cases,
            router.config,
            {intent.name: intent for intent in router.intent_set.intents},
            found.quality,
            floor=args.floor,
            held_out=args.held_out,
            seed=args.seed,
            confidences=found.confidences,
            **_cascade_grid(args.learn_cascade, router),
        )
    except ValueError as exc:
        raise InputError(str(exc)) from None
    if args.json:
        from dataclasses import asdict

        print(json.dumps(asdict(result), indent=2))
    else:
        _print_tune(result, args.seed, found.source, args.learn_cascade)
    if args.plot is not None:
        plot(result.points, result.chosen, result.flagship_quality, args.plot, "modeltriage tune")
        print(f"plot written to {args.plot}", file=sys.stderr)
    if args.write:
        _write_tuned(result, args.intents, args.learn_cascade)
    return 0


def _cascade_grid(learn: bool, router: Router) -> dict[str, Any]:
    """With --learn-cascade: margin by cascade_margin, min_similarity kept as configured
    (the three together would be a cube of points, each routing every case)."""
    from modeltriage.learn.tuning import default_margins

    if not learn:
        return {}
    return {
        "cascade_margins": default_margins(router.config.scoring.aggregation),
        "min_similarities": (router.config.thresholds.min_similarity,),
    }


def _print_tune(result: TuneResult, seed: int, source: str, cascade: bool = False) -> None:
    from modeltriage.learn.tuning_report import format_table, format_threshold

    chosen = result.chosen
    print(
        f"tuned on {result.tune_cases} cases, {result.held_out_cases} held out (seed "
        f"{seed}); {source}"
    )
    print(
        f"always-flagship quality {result.flagship_quality:.3f}; floor {result.min_quality:.3f}\n"
    )
    print(format_table(result.points, chosen, cascade=cascade))
    if chosen is None:
        print("\nno point reaches the floor; nothing chosen")
        return
    print(
        f"\nchosen: margin {format_threshold(chosen.margin)}, min_similarity "
        f"{format_threshold(chosen.min_similarity)}"
        + (f", cascade_margin {format_threshold(chosen.cascade_margin)}" if cascade else "")
        + f": savings {100 * chosen.savings:.1f}%, "
        f"quality {chosen.quality:.3f} on the tuning split"
    )
    if result.held_out is not None:
        held = result.held_out
        print(f"held out: savings {100 * held.savings:.1f}%, quality {held.quality:.3f}")


def _write_tuned(result: TuneResult, intents_dir: Path, cascade: bool = False) -> None:
    from modeltriage.core.config import ROUTER_CONFIG_FILE
    from modeltriage.learn.tuning_save import UNCHANGED, write_thresholds

    chosen = result.chosen
    if chosen is None:
        raise InputError("--write: no point reaches the floor, router.yaml left as it is")
    backup = write_thresholds(
        Path(intents_dir) / ROUTER_CONFIG_FILE,
        chosen.margin,
        chosen.min_similarity,
        chosen.difficulty_confidence,
        cascade_margin=chosen.cascade_margin if cascade else UNCHANGED,
    )
    print(f"router.yaml updated; previous version kept as {backup}", file=sys.stderr)
