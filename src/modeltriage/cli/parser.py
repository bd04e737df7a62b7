"""The ``modeltriage`` argument parser: one small function per sub-command's arguments.

Kept light at import time: building the parser imports no library module beyond the
argument helpers of the sub-CLIs.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import TYPE_CHECKING

from modeltriage.cli.eval import add_eval_parser
from modeltriage.cli.finetune import add_finetune_parser
from modeltriage.cli.outcomes import add_grouping_args, add_plan_args
from modeltriage.cli.review import add_review_parsers
from modeltriage.cli.serving import add_serve_security_args

DEFAULT_INTENTS = os.environ.get("MODELTRIAGE_INTENTS", "intents")

if TYPE_CHECKING:
    from typing import TypeAlias

    SubParsers: TypeAlias = argparse._SubParsersAction[argparse.ArgumentParser]


def _intents_arg(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--intents",
        type=Path,
        default=Path(DEFAULT_INTENTS),
        help="directory with router.yaml and the intent files (default: %(default)s, "
        "or $MODELTRIAGE_INTENTS)",
    )


def build_parser() -> argparse.ArgumentParser:
    from modeltriage import __version__

    parser = argparse.ArgumentParser(
        prog="modeltriage", description="Route each LLM request to the cheapest capable model."
    )
    parser.add_argument("--version", action="version", version=f"modeltriage {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    _intents_arg(sub.add_parser("build", help="embed the exemplars and save the index"))
    _intents_arg(
        sub.add_parser("check", help="validate the intent files and report the index state")
    )
    _add_route(sub)
    _add_simulate(sub)
    _add_learn(sub)
    add_finetune_parser(sub)
    _add_logs(sub)
    _add_tune(sub)
    _add_serve(sub)
    add_eval_parser(sub)
    add_review_parsers(sub, _intents_arg)
    return parser


def _add_route(sub: SubParsers) -> None:
    p = sub.add_parser("route", help="print the routing decision for a text as JSON")
    p.add_argument("text", help="the request text; '-' reads it from standard input")
    p.add_argument("--explain", action="store_true", help="include the nearest exemplars")
    p.add_argument("--build", action="store_true", help="build the index first if needed")
    p.add_argument("--no-log", action="store_true", help="do not record this decision")
    p.add_argument("--max-latency-ms", type=float, help="only models typically this fast")
    p.add_argument("--max-cost-usd", type=float, help="only models estimated this cheap")
    p.add_argument("--step", help="a pipeline step of router.yaml's `steps`")
    _intents_arg(p)


def _add_simulate(sub: SubParsers) -> None:
    p = sub.add_parser(
        "simulate", help="daily spend of a traffic sample, routed versus all-flagship"
    )
    p.add_argument("--requests-per-day", type=int, default=100_000)
    p.add_argument(
        "--traffic",
        type=Path,
        default=Path("examples/traffic/support_day.jsonl"),
        help='JSON lines {"text": ..., "expected_intent": ... (optional)}: the mix of requests '
        "(default: %(default)s)",
    )
    p.add_argument(
        "--escalation-rate",
        default="1.0",
        help="share of cascade plans whose cheap answer is escalated: a number from 0 to 1 "
        "(default: %(default)s, the upper bound of the cost), or `log`: the share measured in "
        "the decision log (answers checked with /escalate)",
    )
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    _intents_arg(p)


def _add_learn(sub: SubParsers) -> None:
    p = sub.add_parser(
        "learn", help="turn labelled outcomes into intents with learned difficulties"
    )
    p.add_argument("outcomes", type=Path, help="*.outcomes.jsonl: per-prompt model outcomes")
    p.add_argument(
        "--tiers",
        help="TIER=MODEL for two or three tiers, cheapest first, e.g. "
        "small=mistralai/mixtral-8x7b-chat,mid=zero-one-ai/Yi-34B-Chat,flagship=gpt-4-1106-preview"
        " (with --plans, --flagship alone will do)",
    )
    p.add_argument("--flagship", help="with --plans: the flagship model")
    p.add_argument(
        "--margin",
        type=float,
        help="with --plans: the safety margin in standard errors (default: learned by "
        "5-fold cross-validation)",
    )
    p.add_argument("--out", type=Path, required=True, help="new intents directory to write")
    p.add_argument(
        "--good", type=float, default=0.5, help="quality counted as answered well (%(default)s)"
    )
    add_grouping_args(p)
    add_plan_args(p)


def _add_logs(sub: SubParsers) -> None:
    p = sub.add_parser("logs", help="recent logged decisions and a summary of the log")
    p.add_argument("--limit", type=int, default=20, help="recent decisions to list (0: none)")
    p.add_argument(
        "--since", help="only decisions at or after this ISO time, or a duration: 30m, 24h, 7d"
    )
    p.add_argument("--url", help="log URL (default: $MODELTRIAGE_LOG_URL, else router.yaml)")
    p.add_argument("--json", action="store_true", help="print summary and rows as JSON")
    _intents_arg(p)


# Each sampled text is re-routed through the encoder (5-30 ms each on a 2-core machine):
# 1,000 keep `tune --log` under a minute on any log.
DEFAULT_LOG_SAMPLE = 1000


def _add_tune(sub: SubParsers) -> None:
    p = sub.add_parser(
        "tune", help="sweep the cascade thresholds offline and pick the cheapest good point"
    )
    p.add_argument(
        "--labelled",
        type=Path,
        help='JSON lines with "text" and "intent" (or "expected_intent"; null = out of scope), '
        "labelled with this router's intent names",
    )
    p.add_argument(
        "--log",
        action="store_true",
        help="tune on the decision log: its stored texts, with feedback as measured quality",
    )
    p.add_argument("--url", help="log URL for --log (default: $MODELTRIAGE_LOG_URL, router.yaml)")
    p.add_argument(
        "--learn-cascade",
        action="store_true",
        help="with --log: also sweep thresholds.cascade_margin, pricing each cascade plan "
        "by the log's checked answers (POST /escalate events and feedback on kept and "
        "escalated answers) instead of as always escalated",
    )
    p.add_argument(
        "--sample",
        type=int,
        default=DEFAULT_LOG_SAMPLE,
        help="with --log: re-route at most this many logged requests, a random sample drawn "
        f"with --seed (default {DEFAULT_LOG_SAMPLE}; a smaller log is used whole)",
    )
    p.add_argument(
        "--outcomes",
        type=Path,
        help="*.outcomes.jsonl scored by each chosen model's real quality and cost (the "
        "router's models must be the file's, e.g. intents made by `modeltriage learn`); "
        "also sweeps thresholds.difficulty_confidence",
    )
    p.add_argument(
        "--floor",
        type=float,
        default=0.98,
        help="keep quality at or above this share of always-flagship's (default: %(default)s)",
    )
    p.add_argument("--held-out", type=float, default=0.3, help="share kept for reporting")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--plot", type=Path, help="write the cost/quality curve to this PNG")
    p.add_argument("--write", action="store_true", help="update router.yaml (keeps a backup)")
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    _intents_arg(p)


def _add_serve(sub: SubParsers) -> None:
    p = sub.add_parser("serve", help="run the HTTP service (POST /route)")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument(
        "--workers",
        type=int,
        default=1,
        help="worker processes sharing the built index and the decision log (default: 1)",
    )
    p.add_argument(
        "--ray",
        action="store_true",
        help="serve on a local single-node Ray Serve (the `ray` extra): --ray-config's "
        "applications, as Ray's `serve run` would, with --intents, --host and --port",
    )
    p.add_argument(
        "--ray-config",
        type=Path,
        default=Path("deploy/ray/serve.yaml"),
        help="the Ray Serve config --ray deploys (default: %(default)s)",
    )
    p.add_argument(
        "--no-build",
        action="store_true",
        help="fail instead of building a missing or stale index",
    )
    p.add_argument(
        "--samples",
        type=Path,
        default=Path("examples/traffic"),
        help="directory of traffic files the explorer (/ui) may sweep (examples/traffic)",
    )
    p.add_argument(
        "--keep-last-good",
        action="store_true",
        help="when the intent files are broken or the index is stale, start on the last "
        "index that served (and say so) instead of refusing to start",
    )
    p.add_argument(
        "--watch",
        action="store_true",
        help="reload when a YAML file of the intents directory changes (SIGHUP and "
        "POST /admin/reload always reload)",
    )
    add_serve_security_args(p)
    _intents_arg(p)
