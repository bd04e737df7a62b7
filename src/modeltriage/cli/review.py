"""Reviewing intent changes like code: `lint`, `diff` and `mine`. Each parses its
arguments, calls one library function (:mod:`modeltriage.learn.lint`,
:mod:`modeltriage.learn.intent_diff`, :mod:`modeltriage.learn.mining`) and prints."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from modeltriage.errors import InputError

if TYPE_CHECKING:
    from typing import TypeAlias

    from modeltriage.core.encoders import Encoder
    from modeltriage.learn.intent_diff import Side

    SubParsers: TypeAlias = argparse._SubParsersAction[argparse.ArgumentParser]


def add_review_parsers(
    sub: SubParsers, add_intents: Callable[[argparse.ArgumentParser], None]
) -> None:
    """`lint`, `diff` and `mine`; ``add_intents`` adds the shared --intents option."""
    p = sub.add_parser(
        "lint", help="check the exemplars: collisions, overlaps, duplicates, leave-one-out"
    )
    p.add_argument("--json", action="store_true", help="print the findings as JSON")
    p.add_argument("--strict", action="store_true", help="warnings fail too (exit status 1)")
    p.add_argument(
        "--no-build",
        action="store_true",
        help="fail when the index is missing or stale instead of building one in memory",
    )
    add_intents(p)

    d = sub.add_parser("diff", help="route the same requests through two intent sets and compare")
    d.add_argument("old", type=Path, help="the old intents directory, or a router.yaml")
    d.add_argument("new", type=Path, help="the new intents directory, or a router.yaml")
    source = d.add_mutually_exclusive_group(required=True)
    source.add_argument(
        "--requests", type=Path, help='JSON lines with "text" (a traffic file, as simulate reads)'
    )
    source.add_argument("--log", action="store_true", help="the decision log's stored texts")
    d.add_argument("--since", help="with --log: only decisions since an ISO time or 30m/24h/7d")
    d.add_argument("--url", help="log URL for --log (default: $MODELTRIAGE_LOG_URL, new's)")
    d.add_argument("--requests-per-day", type=int, default=100_000)
    d.add_argument(
        "--max-cost-increase",
        type=float,
        help="fail when the estimated cost per day rises by more than this percentage",
    )
    d.add_argument(
        "--max-cascade-increase",
        type=float,
        help="fail when the cascade rate (straight to a stronger tier) rises by more than "
        "this many percentage points",
    )
    d.add_argument("--examples", type=int, default=3, help="example texts per change")
    d.add_argument("--json", action="store_true", help="print JSON instead of markdown")
    d.add_argument(
        "--intents",
        type=Path,
        default=Path("intents"),
        help="the intent files to use with a router.yaml given as OLD or NEW",
    )

    m = sub.add_parser(
        "mine", help="propose exemplars and intents from logged requests the router missed"
    )
    m.add_argument("--log", action="store_true", required=True, help="mine the decision log")
    m.add_argument("--since", help="only decisions since an ISO time or 30m/24h/7d")
    m.add_argument("--url", help="log URL (default: $MODELTRIAGE_LOG_URL, else router.yaml)")
    m.add_argument(
        "--out",
        type=Path,
        default=Path("mined.proposals.yaml"),
        help="the YAML patch to write for review (default: %(default)s); never applied",
    )
    m.add_argument(
        "--poor-quality", type=float, default=0.5, help="feedback below this counts as poor"
    )
    m.add_argument("--clusters", type=int, help="how many groups (default: from the count)")
    m.add_argument("--examples", type=int, default=5, help="example texts per proposal")
    m.add_argument("--json", action="store_true", help="print the proposals as JSON")
    add_intents(m)


def run_lint(args: argparse.Namespace, encoder: Encoder | None) -> int:
    from modeltriage.learn.lint import lint_intents
    from modeltriage.learn.lint_report import format_lint

    report = lint_intents(args.intents, encoder, build=not args.no_build)
    if args.json:
        print(json.dumps(report.as_dict(), indent=2, ensure_ascii=False))
    else:
        if report.index_note is not None:
            print(report.index_note, file=sys.stderr)
        print(format_lint(report))
    return report.exit_status(args.strict)


def run_diff(args: argparse.Namespace, encoder: Encoder | None) -> int:
    from modeltriage.learn.intent_diff import (
        DiffBounds,
        diff_intent_sets,
        format_diff_markdown,
        load_side,
    )

    if args.requests_per_day < 1:
        raise InputError("--requests-per-day must be at least 1")
    if args.examples < 0:
        raise InputError("--examples must be 0 or more")
    bounds = DiffBounds.checked(args.max_cost_increase, args.max_cascade_increase)
    old = load_side(args.old, args.intents)
    new = load_side(args.new, args.intents)
    texts = _diff_texts(args, new)
    result = diff_intent_sets(
        old, new, texts, encoder, args.requests_per_day, bounds, examples=args.examples
    )
    for note in result.notes:
        print(note, file=sys.stderr)
    if args.json:
        print(json.dumps(result.as_dict(), indent=2, ensure_ascii=False))
    else:
        print(format_diff_markdown(result))
    return 1 if result.violations else 0


def _diff_texts(args: argparse.Namespace, new: Side) -> list[str]:
    from modeltriage.learn.simulation import read_traffic

    if args.requests is not None:
        if args.since is not None:
            raise InputError("--since goes with --log, not --requests")
        return [row.text for row in read_traffic(args.requests)]
    from modeltriage.cli.commands import _parse_since
    from modeltriage.learn.mining import logged_texts

    texts = logged_texts(new.intent_set, args.url, _parse_since(args.since))
    if not texts:
        raise InputError("the decision log holds no request texts to route (log.store_text?)")
    return texts


def run_mine(args: argparse.Namespace, encoder: Encoder | None) -> int:
    from modeltriage.cli.commands import _parse_since
    from modeltriage.learn.mining import mine_log, write_proposals

    if not 0.0 <= args.poor_quality <= 1.0:  # also refuses NaN
        raise InputError(f"--poor-quality must be from 0 to 1, got {args.poor_quality}")
    if args.examples < 1:
        raise InputError("--examples must be at least 1")
    result = mine_log(
        args.intents,
        encoder,
        url=args.url,
        since=_parse_since(args.since),
        poor_quality=args.poor_quality,
        clusters=args.clusters,
        examples=args.examples,
    )
    if result.message is not None:
        print(result.message)
        return 0
    write_proposals(result, args.out, args.intents)
    if args.json:
        print(json.dumps(result.as_dict(), indent=2, ensure_ascii=False))
    else:
        from modeltriage.learn.mining import format_mining

        print(format_mining(result, args.out))
    return 0
