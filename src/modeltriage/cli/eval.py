"""The ``eval`` command: measure routing quality on labelled data.

``modeltriage eval intents`` scores intent routing on ``*.intents.jsonl`` files. Each kind
of labelled data is a subcommand of ``eval`` whose parser sets ``eval_handler``; the
main CLI dispatches every ``eval`` call to :func:`run_eval`.

Kept light at import time (the main CLI builds this parser on every call): the library,
and torch behind the encoder, are imported only when a handler runs.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from modeltriage.core.encoders import Encoder

# The values of config.Aggregation, spelt out so building the parser imports no pydantic.
AGGREGATIONS = ("max", "mean_top2", "vote")


def add_eval_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``eval`` and its subcommands to the main CLI's subparsers."""
    parser = sub.add_parser(
        "eval",
        help="measure routing quality on labelled data",
        description="Measure routing quality on labelled data.",
    )
    kinds = parser.add_subparsers(dest="eval_command", required=True, metavar="KIND")
    _add_intents_parser(kinds)
    from modeltriage.cli.outcomes import add_outcomes_parser

    add_outcomes_parser(kinds)


def _add_intents_parser(kinds: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = kinds.add_parser(
        "intents",
        help="intent accuracy, out-of-scope detection and cost on *.intents.jsonl files",
        description="Build a router whose intents come from TRAIN.jsonl, route every row of "
        "TEST.jsonl, and report in-scope accuracy, macro-F1, out-of-scope recall and "
        "precision and estimated cost, beside plain top-1 nearest neighbour and "
        'always-flagship. Files: JSON lines {"text": str, "intent": str | null}, '
        "null = out of scope.",
    )
    p.add_argument(
        "--exemplars",
        type=Path,
        required=True,
        metavar="TRAIN.jsonl",
        help="labelled rows whose in-scope rows become the intents' exemplars",
    )
    p.add_argument("--test", type=Path, required=True, metavar="TEST.jsonl", help="rows to route")
    p.add_argument(
        "--per-intent",
        type=int,
        metavar="N",
        help="sample N exemplars per intent (default: all rows), to mimic a hand-written set",
    )
    p.add_argument(
        "--seed", type=int, default=0, help="seed of the sampling and the held-out split (0)"
    )
    p.add_argument("--top-k", type=int, metavar="K", help="override scoring.top_k")
    p.add_argument("--aggregation", choices=AGGREGATIONS, help="override scoring.aggregation")
    threshold = p.add_mutually_exclusive_group()
    threshold.add_argument(
        "--min-similarity",
        "--floor",
        dest="min_similarity",
        type=float,
        metavar="S",
        help="no-match threshold: below this top similarity a request is out of scope "
        "(default: thresholds.min_similarity of the config; --floor is its former name)",
    )
    threshold.add_argument(
        "--tune-min-similarity",
        "--tune-floor",
        dest="tune_min_similarity",
        action="store_true",
        help="choose min_similarity on 20%% of each intent's training rows plus the training "
        "file's out-of-scope rows, held out from the exemplars (never on the test set); "
        "--tune-floor is its former name",
    )
    p.add_argument("--json", type=Path, metavar="PATH", help="also write the full report here")
    p.add_argument(
        "--intents",
        type=Path,
        default=Path(os.environ.get("MODELTRIAGE_INTENTS", "intents")),
        help="directory whose router.yaml gives models, prices and thresholds; its intent "
        "files are not used (default: %(default)s, or $MODELTRIAGE_INTENTS)",
    )
    p.add_argument(
        "--encoder",
        type=Path,
        metavar="MODEL_DIR",
        help="a fine-tuned model directory (modeltriage finetune) instead of the packaged "
        "all-MiniLM-L6-v2",
    )
    p.set_defaults(eval_handler=run_eval_intents)


def run_eval(args: argparse.Namespace, encoder: Encoder | None = None) -> int:
    """Dispatch ``modeltriage eval KIND`` to the subcommand's handler, with the injected
    encoder (None: the real one)."""
    handler: Callable[[argparse.Namespace, Encoder | None], int] = args.eval_handler
    return handler(args, encoder)


def run_eval_intents(args: argparse.Namespace, encoder: Encoder | None = None) -> int:
    """``modeltriage eval intents``; ``encoder`` defaults to the real one (tests pass theirs)."""
    from modeltriage.learn.eval_intents import IntentEvalRun, run_intent_eval
    from modeltriage.learn.eval_report import format_report
    from modeltriage.learn.evaluation import EvalOptions

    run = IntentEvalRun(
        exemplars=args.exemplars,
        test=args.test,
        intents_dir=args.intents,
        options=EvalOptions(
            per_intent=args.per_intent,
            seed=args.seed,
            top_k=args.top_k,
            aggregation=args.aggregation,
            min_similarity=args.min_similarity,
            tune_min_similarity=args.tune_min_similarity,
        ),
        json_path=args.json,
        encoder_path=args.encoder,
    )
    report = run_intent_eval(run, encoder)
    print(format_report(report))
    if args.json is not None:
        print(f"report written to {args.json}", file=sys.stderr)
    return 0
