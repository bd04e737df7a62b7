"""`modeltriage eval outcomes`: thin CLI over
modeltriage.learn.outcome_files.evaluate_outcome_files."""

from __future__ import annotations

import argparse
import json
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Any

from modeltriage.errors import InputError

if TYPE_CHECKING:
    from modeltriage.core.encoders import Encoder

# learn.outcome_margin.Z_DEFAULT, spelled out so the parser does not import numpy.
MARGIN_Z = 0.0


def add_grouping_args(p: argparse.ArgumentParser, *, seed: bool = True) -> None:
    """How `learn` groups prompts into intents (shared by `learn` and `eval outcomes`)."""
    p.add_argument(
        "--group-by",
        choices=["task", "cluster"],
        default="task",
        help="one intent per `task` field (rows without one are clustered), or clusters "
        "of all prompts' embeddings (default: %(default)s)",
    )
    p.add_argument(
        "--clusters",
        type=int,
        help="number of clusters (default: sqrt(prompts / 2), from 2 to 50)",
    )
    if seed:
        p.add_argument("--seed", type=int, default=0, help="clustering seed (%(default)s)")


def add_plan_args(p: argparse.ArgumentParser) -> None:
    """Serving plans per intent, chosen from outcomes (with answers when the file has
    them)."""
    p.add_argument(
        "--plans",
        action="store_true",
        help="choose a plan per intent from outcomes over every model in the file: the "
        "flagship or the cheapest model that keeps the floor; with `responses`, also a "
        "model checked by other models that must all agree",
    )
    p.add_argument(
        "--prices",
        type=Path,
        help="with --plans: JSON/YAML {model: {input_usd_per_mtok, output_usd_per_mtok}} "
        "to estimate the costs a model has none of (else a missing cost is an error)",
    )
    p.add_argument(
        "--floor",
        type=float,
        default=0.98,
        help="with --plans: keep at least this share of the flagship's quality (%(default)s)",
    )
    p.add_argument(
        "--candidates",
        type=int,
        default=3,
        help="with --plans: cheap models tried per intent, the most often right (%(default)s)",
    )
    p.add_argument(
        "--agree",
        type=int,
        default=3,
        help="with --plans and `responses`: at most this many of those models answer a "
        "cascade, escalating unless all agree (%(default)s; 1: no cascades)",
    )
    p.add_argument(
        "--margin-z",
        type=float,
        default=MARGIN_Z,
        help="with --plans: the learned safety margin is the one whose cross-validated "
        "quality, less this many standard errors, keeps the floor (%(default)s: the pooled "
        "held-out quality itself; 1.645: a one-sided 95%% bound, more room, less savings)",
    )


def add_outcomes_parser(eval_sub: Any) -> None:
    p = eval_sub.add_parser(
        "outcomes",
        help="score routing by each chosen model's real quality and cost on labelled outcomes",
    )
    p.add_argument("--train", type=Path, required=True, help="*.outcomes.jsonl to learn from")
    p.add_argument(
        "--test",
        type=Path,
        help="*.outcomes.jsonl to score on; without it a --held-out share of --train is "
        "held out (split by --seed, never tested on what was learned)",
    )
    p.add_argument(
        "--tiers",
        help="TIER=MODEL for two or three tiers, cheapest first; the last is the flagship "
        "(needed without --plans)",
    )
    p.add_argument(
        "--flagship", help="the flagship model; the last of --tiers, or alone with --plans"
    )
    p.add_argument("--held-out", type=float, default=0.3)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--seeds",
        type=int,
        default=5,
        help="with --plans and no --test: splits scored, seeds --seed onwards (%(default)s)",
    )
    p.add_argument("--good", type=float, default=0.5, help="quality counted as answered well")
    p.add_argument(
        "--long-text",
        choices=["head", "tail"],
        default="tail",
        help="embed the head or the tail of long prompts (default: %(default)s)",
    )
    add_grouping_args(p, seed=False)  # --seed above also seeds the clustering
    add_plan_args(p)
    p.add_argument("--plot", type=Path, help="write quality against cost to this PNG")
    p.add_argument("--json", type=Path, help="write the full report as JSON to this path")
    p.set_defaults(eval_handler=run_outcomes)


def run_outcomes(args: argparse.Namespace, encoder: Encoder | None = None) -> int:
    """``modeltriage eval outcomes``; ``encoder`` defaults to the real one, its vectors
    kept in the cache directory (tests pass theirs)."""
    from modeltriage.learn.outcome_compare import Comparison
    from modeltriage.learn.outcome_compare_report import format_comparison, plot_comparison
    from modeltriage.learn.outcome_files import evaluate_outcome_files
    from modeltriage.learn.outcome_report import format_outcomes, plot_outcomes

    report = evaluate_outcome_files(
        args.train,
        args.test,
        args.tiers,
        (lambda: cached_real_encoder()) if encoder is None else lambda: encoder,
        flagship=args.flagship,
        held_out=args.held_out,
        seed=args.seed,
        good=args.good,
        long_text=args.long_text,
        group_by=args.group_by,
        clusters=args.clusters,
        plans=args.plans,
        floor=args.floor,
        candidates=args.candidates,
        agree=args.agree,
        margin_z=checked_margin_z(args.margin_z),
        seeds=args.seeds,
        prices=args.prices,
    )
    if isinstance(report, Comparison):
        print(format_comparison(report))
        if args.plot is not None:
            plot_comparison(report, args.plot)
            print(f"plot written to {args.plot}")
    else:
        print(format_outcomes(report))
        if args.plot is not None:
            plot_outcomes(report, args.plot)
            print(f"plot written to {args.plot}")
    if args.json is not None:
        args.json.write_text(json.dumps(asdict(report), indent=2), encoding="utf-8")
    return 0


def checked_margin_z(z: float) -> float:
    if not (0 <= z <= 10):
        raise InputError(f"--margin-z must be from 0 to 10 standard errors, got {z}")
    return z


def cached_real_encoder() -> Encoder:
    """The real encoder, each text embedded once across runs (vectors in the cache
    directory, never in the repository)."""
    from modeltriage.core.encoders import SentenceTransformerEncoder
    from modeltriage.learn.embedding_cache import CachingEncoder, disk_store

    real = SentenceTransformerEncoder()
    return CachingEncoder(real, store=disk_store(real.model_id))
