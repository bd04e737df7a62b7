"""The ``eval`` command: measure routing quality on labelled data.

``modeltriage eval intents`` scores intent routing on ``*.intents.jsonl`` files. Each kind
of labelled data is a subcommand of ``eval`` whose parser sets ``eval_handler``; the
main CLI dispatches every ``eval`` call to :func:`run_eval`.

Kept light at import time (the main CLI builds this parser on every call): the library,
and torch behind the encoder, are imported only when a handler runs.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from modeltriage.errors import ConfigError, InputError

if TYPE_CHECKING:
    from modeltriage.core.config import RouterConfig
    from modeltriage.core.encoders import Encoder
    from modeltriage.learn.datasets import LabelledText

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
    floor = p.add_mutually_exclusive_group()
    floor.add_argument(
        "--floor",
        type=float,
        metavar="F",
        help="no-match floor (default: thresholds.min_similarity of the config)",
    )
    floor.add_argument(
        "--tune-floor",
        action="store_true",
        help="choose the floor on 20%% of each intent's training rows plus the training "
        "file's out-of-scope rows, held out from the exemplars (never on the test set)",
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


def run_eval(args: argparse.Namespace) -> int:
    """Dispatch ``modeltriage eval KIND`` to the subcommand's handler."""
    handler: Callable[[argparse.Namespace], int] = args.eval_handler
    return handler(args)


def _row_lines(path: Path) -> list[int]:
    """Line number of each row ``read_intents_jsonl`` returns (it skips blank lines), read
    the same way (text mode, universal newlines) so the two stay aligned."""
    with path.open(encoding="utf-8") as handle:
        return [number for number, line in enumerate(handle, start=1) if line.strip()]


def _is_intent_name(name: str) -> bool:
    from pydantic import ValidationError

    from modeltriage.core.intents import Intent

    try:
        # Ask the schema itself, so the rule cannot drift; a name it would strip is
        # refused too, since the stripped name would never equal the gold label.
        intent = Intent.model_validate({"name": name, "difficulty": "easy", "exemplars": ["x"]})
        return intent.name == name
    except ValidationError:
        return False


def _check_training(path: Path, rows: Sequence[LabelledText], tune_floor: bool) -> None:
    if not any(r.intent is not None for r in rows):
        raise ConfigError("no in-scope rows (every intent is null): nothing to route to", path)
    seen: set[str] = set()
    for position, row in enumerate(rows):
        if row.intent is None or row.intent in seen:
            continue
        if not _is_intent_name(row.intent):
            raise ConfigError(
                f"intent {row.intent!r} is not a valid intent name (letters, digits, "
                "'_', '.', '-'; starting with a letter or digit)",
                path,
                _row_lines(path)[position],
            )
        seen.add(row.intent)
    if tune_floor and not any(r.intent is None for r in rows):
        raise ConfigError(
            "--tune-floor needs out-of-scope rows (intent null) to choose a floor on; "
            "give --floor instead",
            path,
        )


def _check_test(path: Path, rows: Sequence[LabelledText], train_intents: set[str]) -> None:
    if not rows:
        raise ConfigError("no rows to evaluate", path)
    for position, row in enumerate(rows):
        if row.intent is not None and row.intent not in train_intents:
            raise ConfigError(
                f"intent {row.intent!r} has no training rows, so the router cannot predict it",
                path,
                _row_lines(path)[position],
            )


def _check_routable(path: Path, rows: Sequence[LabelledText], config: RouterConfig) -> None:
    from modeltriage.learn.evaluation import first_refused

    refused = first_refused(rows, config.limits.max_text_bytes)
    if refused is not None:
        position, why = refused
        raise ConfigError(why, path, _row_lines(path)[position])


def _load_config(intents_dir: Path) -> RouterConfig:
    from modeltriage.core.config import ROUTER_CONFIG_FILE, load_router_config

    if not intents_dir.is_dir():
        raise ConfigError("intents directory not found", intents_dir)
    return load_router_config(intents_dir / ROUTER_CONFIG_FILE)


def _check_args(args: argparse.Namespace) -> None:
    if args.per_intent is not None and args.per_intent < 1:
        raise InputError("--per-intent must be at least 1")
    if args.top_k is not None and not 1 <= args.top_k <= 1000:
        raise InputError("--top-k must be between 1 and 1000")
    if args.floor is not None and not -1 <= args.floor <= 1:
        raise InputError("--floor is a cosine similarity: between -1 and 1")
    if args.json is not None and not args.json.parent.is_dir():
        # Found now rather than after minutes of embedding.
        raise InputError(f"--json: directory {args.json.parent} does not exist")


def run_eval_intents(args: argparse.Namespace, encoder: Encoder | None = None) -> int:
    """``modeltriage eval intents``; ``encoder`` defaults to the real one (tests pass theirs)."""
    from modeltriage.learn.datasets import read_intents_jsonl
    from modeltriage.learn.evaluation import EvaluationError, evaluate_intents, format_report

    _check_args(args)
    config = _load_config(args.intents)
    train = read_intents_jsonl(args.exemplars)
    test = read_intents_jsonl(args.test)
    _check_training(args.exemplars, train, args.tune_floor)
    _check_test(args.test, test, {r.intent for r in train if r.intent is not None})
    _check_routable(args.test, test, config)
    if args.tune_floor:
        _check_routable(args.exemplars, train, config)
    if encoder is None:
        from modeltriage.core.encoders import SentenceTransformerEncoder

        encoder = SentenceTransformerEncoder(model_path=args.encoder)
    report = evaluate_intents(
        train,
        test,
        config,
        encoder,
        per_intent=args.per_intent,
        seed=args.seed,
        top_k=args.top_k,
        aggregation=args.aggregation,
        floor=args.floor,
        tune_floor=args.tune_floor,
    )
    print(format_report(report))
    if args.json is not None:
        payload = {
            "command": "eval intents",
            "exemplars_file": str(args.exemplars),
            "test_file": str(args.test),
            "intents_dir": str(args.intents),
            "encoder": encoder.model_id,
            **report.as_dict(),
        }
        try:
            args.json.write_text(
                json.dumps(payload, indent=1, ensure_ascii=False) + "\n", encoding="utf-8"
            )
        except OSError as exc:
            raise EvaluationError(f"{args.json}: cannot write the report: {exc.strerror}") from None
        print(f"report written to {args.json}", file=sys.stderr)
    return 0
