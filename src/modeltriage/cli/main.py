"""Command line: a thin layer that turns library errors into one-line messages."""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Sequence
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import TYPE_CHECKING

from modeltriage.cli.eval import add_eval_parser, run_eval
from modeltriage.cli.finetune import add_finetune_parser, run_finetune
from modeltriage.cli.outcomes import add_grouping_args, add_plan_args
from modeltriage.errors import IndexStateError, InputError, ModelTriageError

if TYPE_CHECKING:
    from modeltriage.core.intents import IntentSet
    from modeltriage.learn.outcome_data import OutcomeRow
    from modeltriage.learn.tuning import Case, QualityModel
    from modeltriage.router import Router

DEFAULT_INTENTS = os.environ.get("MODELTRIAGE_INTENTS", "intents")


def _intents_arg(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--intents",
        type=Path,
        default=Path(DEFAULT_INTENTS),
        help="directory with router.yaml and the intent files (default: %(default)s, "
        "or $MODELTRIAGE_INTENTS)",
    )


def _parser() -> argparse.ArgumentParser:
    from modeltriage import __version__

    parser = argparse.ArgumentParser(
        prog="modeltriage", description="Route each LLM request to the cheapest capable model."
    )
    parser.add_argument("--version", action="version", version=f"modeltriage {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("build", help="embed the exemplars and save the index")
    _intents_arg(p)

    p = sub.add_parser("check", help="validate the intent files and report the index state")
    _intents_arg(p)

    p = sub.add_parser("route", help="print the routing decision for a text as JSON")
    p.add_argument("text", help="the request text; '-' reads it from standard input")
    p.add_argument("--explain", action="store_true", help="include the nearest exemplars")
    p.add_argument("--build", action="store_true", help="build the index first if needed")
    p.add_argument("--no-log", action="store_true", help="do not record this decision")
    p.add_argument("--max-latency-ms", type=float, help="only models typically this fast")
    p.add_argument("--max-cost-usd", type=float, help="only models estimated this cheap")
    p.add_argument("--step", help="a pipeline step of router.yaml's `steps`")
    _intents_arg(p)

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

    p = sub.add_parser(
        "learn", help="turn labelled outcomes into intents with learned difficulties"
    )
    p.add_argument("outcomes", type=Path, help="*.outcomes.jsonl: per-prompt model outcomes")
    p.add_argument(
        "--tiers",
        required=True,
        help="TIER=MODEL for two or three tiers, cheapest first, e.g. "
        "small=mistralai/mixtral-8x7b-chat,mid=zero-one-ai/Yi-34B-Chat,flagship=gpt-4-1106-preview",
    )
    p.add_argument("--out", type=Path, required=True, help="new intents directory to write")
    p.add_argument(
        "--good", type=float, default=0.5, help="quality counted as answered well (%(default)s)"
    )
    add_grouping_args(p)
    add_plan_args(p)

    add_finetune_parser(sub)

    p = sub.add_parser("logs", help="recent logged decisions and a summary of the log")
    p.add_argument("--limit", type=int, default=20, help="recent decisions to list (0: none)")
    p.add_argument(
        "--since", help="only decisions at or after this ISO time, or a duration: 30m, 24h, 7d"
    )
    p.add_argument("--url", help="log URL (default: $MODELTRIAGE_LOG_URL, else router.yaml)")
    p.add_argument("--json", action="store_true", help="print summary and rows as JSON")
    _intents_arg(p)

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

    p = sub.add_parser("serve", help="run the HTTP service (POST /route)")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument(
        "--no-build",
        action="store_true",
        help="fail instead of building a missing or stale index",
    )
    _intents_arg(p)

    add_eval_parser(sub)
    return parser


def _build(args: argparse.Namespace) -> int:
    from modeltriage.router import build_index

    started = time.perf_counter()
    manifest = build_index(args.intents)
    print(
        f"built index {manifest.version}: {manifest.exemplars} exemplars of "
        f"{manifest.intents} intents with {manifest.encoder} "
        f"in {time.perf_counter() - started:.1f}s"
    )
    return 0


def _check(args: argparse.Namespace) -> int:
    from modeltriage.core.index import content_hash as hash_rows
    from modeltriage.core.index import exemplar_rows, read_manifest
    from modeltriage.core.intents import load_intents

    intent_set = load_intents(args.intents)
    rows = exemplar_rows(intent_set.intents)
    print(f"ok: {len(intent_set.intents)} intents, {len(rows)} exemplars in {args.intents}")
    try:
        _, manifest = read_manifest(intent_set.index_path)
    except IndexStateError as exc:
        print(f"index: {exc}; run: modeltriage build --intents {args.intents}")
        return 1
    view_key = intent_set.config.scoring.view_key
    if manifest.content_hash != hash_rows(rows) or manifest.text_view != view_key:
        print(
            f"index: stale (built {manifest.built_at}); run: modeltriage build --intents "
            f"{args.intents}"
        )
        return 1
    problem = _check_encoder(intent_set, manifest.encoder, [(r.intent, r.text) for r in rows])
    if problem is not None:
        print(f"{problem}; run: modeltriage build --intents {args.intents}")
        return 1
    print(f"index: current, version {manifest.version}, built {manifest.built_at}")
    return 0


def _check_encoder(
    intent_set: IntentSet, built_with: str, rows: list[tuple[str, str]]
) -> str | None:
    """Whether the index was built by the encoder router.yaml names; warns (on stdout)
    when a fine-tuned encoder was trained on other exemplars than today's."""
    from modeltriage.core.encoders import fine_tuned_model_id
    from modeltriage.learn.finetune import read_info, rows_hash

    path = intent_set.config.encoder.path
    if path is None:
        if "+ft:" in built_with:
            return f"index: built with the fine-tuned encoder {built_with}, router.yaml names none"
        return None
    base = Path(".") if intent_set.source is None else intent_set.source
    model_dir = base / path
    if not model_dir.is_dir():
        raise InputError(f"encoder.path {model_dir} is not a directory (router.yaml)")
    wanted = fine_tuned_model_id(model_dir)
    info = read_info(model_dir)
    if info is not None and info.content_hash != rows_hash(rows):
        print(
            f"encoder: {model_dir} was fine-tuned on other exemplars ({info.exemplars} "
            f"then, {len(rows)} now): it still works; re-run modeltriage finetune to learn "
            "the new ones"
        )
    if built_with != wanted:
        return f"index: built with encoder {built_with}, router.yaml names {wanted}"
    print(f"encoder: fine-tuned {model_dir} ({wanted})")
    return None


def _route(args: argparse.Namespace) -> int:
    from modeltriage.core.options import RouteOptions
    from modeltriage.router import Router

    text = sys.stdin.read() if args.text == "-" else args.text
    with Router.load(args.intents, build_if_needed=args.build, log=not args.no_log) as router:
        options = RouteOptions(
            explain=args.explain,
            max_latency_ms=args.max_latency_ms,
            max_cost_usd=args.max_cost_usd,
            step=args.step,
        )
        decision = router.route(text, options)
    print(json.dumps(decision.model_dump(mode="json"), indent=2, ensure_ascii=False))
    return 0


def _simulate(args: argparse.Namespace) -> int:
    from modeltriage.learn.simulation import format_report, read_traffic, simulate
    from modeltriage.router import Router, route_all

    if args.requests_per_day < 1:
        raise InputError("--requests-per-day must be at least 1")
    rate = _escalation_rate(args)
    rows = read_traffic(args.traffic)
    # A simulation is not traffic: keep it out of the decision log.
    router = Router.load(args.intents, build_if_needed=True, log=False)
    decisions = route_all(router, [r.text for r in rows])
    report = simulate(rows, decisions, router.config, args.requests_per_day, rate)
    if args.json:
        print(json.dumps(report.as_dict(), indent=2))
    else:
        print(format_report(report))
    return 0


def _escalation_rate(args: argparse.Namespace) -> float:
    """--escalation-rate: a share, or `log` for the share of checked plans that escalated."""
    if args.escalation_rate != "log":
        try:
            rate = float(args.escalation_rate)
        except ValueError:
            rate = float("nan")
        if not 0.0 <= rate <= 1.0:  # also refuses NaN
            raise InputError(
                f"--escalation-rate must be from 0 to 1 or `log`, got {args.escalation_rate}"
            )
        return rate
    from modeltriage.core.intents import load_intents
    from modeltriage.log.report import summarise
    from modeltriage.log.store import open_store
    from modeltriage.log.urls import LOG_URL_ENV, resolve_url

    intent_set = load_intents(args.intents)
    url = os.environ.get(LOG_URL_ENV) or intent_set.config.log.url
    if url is None:
        raise InputError("--escalation-rate log: decision logging is off (no log.url)")
    store = open_store(resolve_url(url, args.intents))
    try:
        summary = summarise(store.decisions(), [], intent_set.config, store.events())
    finally:
        store.close()
    if summary.planned_checked == 0:
        raise InputError(
            "--escalation-rate log: no cascade plan in the log has had its answer checked "
            "(POST /escalate with the decision id) yet; give a number instead"
        )
    rate = summary.planned_escalated / summary.planned_checked
    print(
        f"escalation rate from the log: {summary.planned_escalated} of "
        f"{summary.planned_checked} checked plans escalated ({100 * rate:.1f}%)",
        file=sys.stderr,
    )
    return rate


def _parse_since(value: str | None) -> datetime | None:
    if value is None:
        return None
    units = {"m": 60, "h": 3600, "d": 86400}
    if value[:-1].isdigit() and value[-1:] in units:
        return datetime.now(timezone.utc) - timedelta(seconds=int(value[:-1]) * units[value[-1]])
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise InputError(f"--since: expected an ISO time or 30m/24h/7d, got {value!r}") from None
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=timezone.utc)


def _logs(args: argparse.Namespace) -> int:
    from modeltriage.core.intents import load_intents
    from modeltriage.log.report import format_recent, format_summary, summarise
    from modeltriage.log.store import open_store
    from modeltriage.log.urls import LOG_URL_ENV, resolve_url

    intent_set = load_intents(args.intents)
    url = args.url or os.environ.get(LOG_URL_ENV) or intent_set.config.log.url
    if url is None:
        raise InputError("decision logging is off: no log.url in router.yaml and no --url")
    since = _parse_since(args.since)
    if args.limit < 0:
        raise InputError("--limit must be 0 or more")
    store = open_store(resolve_url(url, args.intents))
    try:
        entries = store.decisions(since=since)
        feedback = store.feedback()
        events = store.events(since=since)
    finally:
        store.close()
    summary = summarise(entries, feedback, intent_set.config, events)
    recent = entries[: args.limit]
    if args.json:
        payload = {
            "summary": summary.as_dict(),
            "recent": [e.to_json_dict() for e in recent],
        }
        print(json.dumps(payload, indent=2, ensure_ascii=False))
        return 0
    print(f"log: {store.url}")
    print(format_summary(summary))
    if recent:
        print(f"\nmost recent {len(recent)}:")
        print(format_recent(recent))
    return 0


def _learn(args: argparse.Namespace) -> int:
    from collections import Counter

    from modeltriage.learn.outcome_data import read_outcomes_jsonl
    from modeltriage.learn.outcome_intents import (
        learn_intents,
        learned_config,
        needs_clustering,
        parse_tiers,
        write_intents_dir,
    )

    tiers = parse_tiers(args.tiers)
    rows = read_outcomes_jsonl(args.outcomes)
    known = set().union(*(r.outcomes for r in rows))
    unknown = [m for _, m in tiers if m not in known]
    if unknown:
        raise InputError(f"--tiers: {args.outcomes} has no outcomes for {unknown}")
    if args.plans:
        return _learn_plans(args, rows, tiers)
    config = learned_config(rows, tiers)
    groups = None
    if needs_clustering(rows, args.group_by):
        from modeltriage.core.encoders import SentenceTransformerEncoder
        from modeltriage.learn.outcome_intents import group_names

        groups = group_names(
            rows,
            SentenceTransformerEncoder(),
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


def _learn_plans(
    args: argparse.Namespace, rows: list[OutcomeRow], tiers: list[tuple[str, str]]
) -> int:
    from modeltriage.learn.outcome_intents import needs_clustering, write_intents_dir
    from modeltriage.learn.planlearning import learn_plans

    encoder = None
    if needs_clustering(rows, args.group_by):
        from modeltriage.core.encoders import SentenceTransformerEncoder

        encoder = SentenceTransformerEncoder()
    learned = learn_plans(
        rows,
        tiers,
        encoder,
        floor=args.floor,
        candidates=args.candidates,
        group_by=args.group_by,
        clusters=args.clusters,
        seed=args.seed,
    )
    header = (
        f"Learned by `modeltriage learn {args.outcomes} --tiers {args.tiers} --plans "
        f"--floor {args.floor:g}`.\nEach intent says how its requests are served: the "
        "flagship, one model, or a model checked by a second opinion."
    )
    write_intents_dir(args.out, learned.config, learned.intents, header)
    choice = learned.choice
    print(
        f"wrote {len(learned.intents)} intents to {args.out} from {learned.rows} prompts "
        f"({learned.skipped} skipped: a model's outcome missing); on those prompts the plans "
        f"keep {100 * choice.quality_share:.1f}% of {tiers[-1][1]}'s quality at "
        f"{100 * choice.savings:.1f}% savings"
    )
    for intent in learned.intents:
        print(f"  {intent.name}: {intent.description}")
    print(
        "these figures are on the prompts the plans were chosen on; held out: "
        "modeltriage eval outcomes --plans"
    )
    print(f"next: modeltriage build --intents {args.out}")
    return 0


def _log_cases(args: argparse.Namespace, router: Router) -> tuple[list[Case], QualityModel, str]:
    from modeltriage.learn.tuning import cases_from_log
    from modeltriage.log.store import open_store
    from modeltriage.log.urls import LOG_URL_ENV, resolve_url
    from modeltriage.router import route_all

    url = args.url or os.environ.get(LOG_URL_ENV) or router.config.log.url
    if url is None:
        raise InputError("--log: decision logging is off (no log.url in router.yaml, no --url)")
    store = open_store(resolve_url(url, args.intents))
    try:
        entries, feedback = store.decisions(), store.feedback()
    finally:
        store.close()
    with_text = [e for e in entries if e.text is not None]
    if not with_text:
        raise InputError(f"--log: no logged decision with its text in {store.url}")
    decisions = route_all(router, [e.text or "" for e in with_text], explain=True)
    cases, quality = cases_from_log(
        with_text,
        feedback,
        [d.neighbours for d in decisions],
        router.config,
        {i.name: i for i in router.intent_set.intents},
    )
    skipped = len(entries) - len(with_text)
    source = (
        f"{len(with_text)} logged requests ({skipped} stored as a hash only, skipped); "
        "quality is measured where feedback exists for the chosen model, else estimated "
        "as the mean feedback of the chosen tier"
    )
    return cases, quality, source


def _tune(args: argparse.Namespace) -> int:
    from dataclasses import asdict

    from modeltriage.core.config import ROUTER_CONFIG_FILE
    from modeltriage.learn.datasets import read_intents_jsonl
    from modeltriage.learn.tuning import QualityModel, cases_from_routes, tune
    from modeltriage.learn.tuning_report import format_table, format_threshold, plot
    from modeltriage.learn.tuning_save import write_thresholds
    from modeltriage.router import Router, route_all

    if sum((args.labelled is not None, args.log, args.outcomes is not None)) != 1:
        raise InputError("tune needs one source: --labelled FILE, --outcomes FILE or --log")
    router = Router.load(args.intents, build_if_needed=True, log=False)
    config = router.config
    intents = {intent.name: intent for intent in router.intent_set.intents}
    confidences: tuple[float | None, ...] = (None,)
    if args.labelled is not None:
        rows = read_intents_jsonl(args.labelled)
        unknown = sorted({r.intent for r in rows if r.intent is not None} - set(intents))
        if unknown:
            raise InputError(
                f"{args.labelled}: labels name intents this router lacks: {unknown[:5]}"
            )
        texts = [r.text for r in rows]
        decisions = route_all(router, texts, explain=True)
        cases = cases_from_routes(
            texts,
            [d.neighbours for d in decisions],
            config,
            labels=[r.intent for r in rows],
            difficulties=[r.difficulty for r in rows],
        )
        quality = QualityModel(config, intents)
        source = "quality is estimated from labels: a request is served well when it reaches "
        source += "a tier at least as strong as its labelled difficulty needs"
    elif args.outcomes is not None:
        from modeltriage.learn.outcome_data import read_outcomes_jsonl
        from modeltriage.learn.outcome_eval import CONFIDENCE_GRID, outcome_cases

        outcome_rows = read_outcomes_jsonl(args.outcomes)
        names = {m.name for m in config.models}
        missing = names - set().union(*(r.outcomes for r in outcome_rows))
        if missing:
            raise InputError(
                f"{args.outcomes}: no outcomes for the router's models {sorted(missing)}; "
                "make the intents with `modeltriage learn`"
            )
        usable = [r for r in outcome_rows if names <= set(r.outcomes)]
        cases = outcome_cases(router, usable)
        quality = QualityModel(config, intents)
        confidences = CONFIDENCE_GRID
        source = (
            f"{len(usable)} prompts with outcomes for every router model "
            f"({len(outcome_rows) - len(usable)} skipped); quality and cost are the chosen model's "
            "real ones"
        )
    else:
        cases, quality, source = _log_cases(args, router)
    if config.thresholds.cascade_margin is not None:
        source += (
            f"; cascade plans (margin below cascade_margin {config.thresholds.cascade_margin}) "
            "are counted as escalated: both calls paid, the plan's model answers"
        )
    try:
        result = tune(
            cases,
            config,
            intents,
            quality,
            floor=args.floor,
            held_out=args.held_out,
            seed=args.seed,
            confidences=confidences,
        )
    except ValueError as exc:
        raise InputError(str(exc)) from None
    chosen = result.chosen
    if args.json:
        print(json.dumps(asdict(result), indent=2))
    else:
        print(
            f"tuned on {result.tune_cases} cases, {result.held_out_cases} held out (seed "
            f"{args.seed}); {source}"
        )
        print(
            f"always-flagship quality {result.flagship_quality:.3f}; floor "
            f"{result.min_quality:.3f}\n"
        )
        print(format_table(result.points, chosen))
        if chosen is None:
            print("\nno point reaches the floor; nothing chosen")
        else:
            print(
                f"\nchosen: margin {format_threshold(chosen.margin)}, min_similarity "
                f"{format_threshold(chosen.min_similarity)}: savings {100 * chosen.savings:.1f}%, "
                f"quality {chosen.quality:.3f} on the tuning split"
            )
            if result.held_out is not None:
                held = result.held_out
                print(f"held out: savings {100 * held.savings:.1f}%, quality {held.quality:.3f}")
    if args.plot is not None:
        plot(result.points, chosen, result.flagship_quality, args.plot, "modeltriage tune")
        print(f"plot written to {args.plot}", file=sys.stderr)
    if args.write:
        if chosen is None:
            raise InputError("--write: no point reaches the floor, router.yaml left as it is")
        backup = write_thresholds(
            Path(args.intents) / ROUTER_CONFIG_FILE,
            chosen.margin,
            chosen.min_similarity,
            chosen.difficulty_confidence,
        )
        print(f"router.yaml updated; previous version kept as {backup}", file=sys.stderr)
    return 0


def _serve(args: argparse.Namespace) -> int:
    try:
        import uvicorn
    except ImportError:
        from modeltriage.errors import MissingDependencyError

        raise MissingDependencyError("uvicorn", "serve") from None
    from modeltriage.http.app import create_app
    from modeltriage.router import Router

    # Load before starting the server so a bad config is a one-line error, not a trace.
    router = Router.load(args.intents, build_if_needed=not args.no_build)
    print(
        f"modeltriage: {router.manifest.intents} intents, index {router.manifest.version}; "
        f"serving on http://{args.host}:{args.port} (docs at /docs)",
        file=sys.stderr,
    )
    with router:
        uvicorn.run(create_app(router=router), host=args.host, port=args.port)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    handlers = {
        "build": _build,
        "check": _check,
        "route": _route,
        "simulate": _simulate,
        "tune": _tune,
        "logs": _logs,
        "learn": _learn,
        "eval": run_eval,
        "finetune": run_finetune,
        "serve": _serve,
    }
    try:
        return handlers[args.command](args)
    except ModelTriageError as exc:
        print(f"modeltriage: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        # The reader (e.g. `| head`) went away: stop quietly, as Unix tools do.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 1
