"""The run functions of the router commands (build, check, route, simulate, logs, serve):
each parses what argparse could not, calls the library and prints.

Every run function takes the parsed arguments and an injected encoder (None: the one
router.yaml names), and returns the exit status. Library modules are imported inside
them so that `modeltriage --help` stays fast.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING

from modeltriage.errors import IndexStateError, InputError

if TYPE_CHECKING:
    from modeltriage.cli.serving import ServePlan
    from modeltriage.core.encoders import Encoder
    from modeltriage.core.index import Manifest


def run_build(args: argparse.Namespace, encoder: Encoder | None) -> int:
    from modeltriage.loading import build_index

    started = time.perf_counter()
    manifest = build_index(args.intents, encoder=encoder)
    print(
        f"built index {manifest.version}: {manifest.exemplars} exemplars of "
        f"{manifest.intents} intents with {manifest.encoder} "
        f"in {time.perf_counter() - started:.1f}s"
    )
    return 0


def run_check(args: argparse.Namespace, encoder: Encoder | None) -> int:
    from modeltriage.learn.checks import check_index

    found = check_index(args.intents, None if encoder is None else encoder.model_id)
    print(f"ok: {found.intents} intents, {found.exemplars} exemplars in {args.intents}")
    if found.error is not None:
        raise InputError(found.error)
    for note in found.notes:
        print(note)
    if found.problem is not None or found.manifest is None:
        print(f"{found.problem}; run: modeltriage build --intents {args.intents}")
        return 1
    manifest = found.manifest
    print(f"index: current, version {manifest.version}, built {manifest.built_at}")
    print(f"index type: {manifest.index_type}{_recall_note(manifest)}")
    return 0


def run_route(args: argparse.Namespace, encoder: Encoder | None) -> int:
    from modeltriage.core.options import RouteOptions
    from modeltriage.router import Router

    text = sys.stdin.read() if args.text == "-" else args.text
    with Router.load(
        args.intents, encoder=encoder, build_if_needed=args.build, log=not args.no_log
    ) as router:
        options = RouteOptions(
            explain=args.explain,
            max_latency_ms=args.max_latency_ms,
            max_cost_usd=args.max_cost_usd,
            step=args.step,
        )
        decision = router.route(text, options)
    print(json.dumps(decision.model_dump(mode="json"), indent=2, ensure_ascii=False))
    return 0


def run_simulate(args: argparse.Namespace, encoder: Encoder | None) -> int:
    from modeltriage.learn.simulation import format_report, read_traffic, simulate
    from modeltriage.router import Router, route_all

    if args.requests_per_day < 1:
        raise InputError("--requests-per-day must be at least 1")
    rate = _escalation_rate(args)
    rows = read_traffic(args.traffic)
    # A simulation is not traffic: keep it out of the decision log.
    router = Router.load(args.intents, encoder=encoder, build_if_needed=True, log=False)
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
    from modeltriage.log.aggregate import checked_plans_in
    from modeltriage.log.open import open_store
    from modeltriage.log.urls import configured_log_url

    intent_set = load_intents(args.intents)
    url = configured_log_url(intent_set.config.log, args.intents)
    if url is None:
        raise InputError("--escalation-rate log: decision logging is off (no log.url)")
    store = open_store(url)
    try:
        plans = checked_plans_in(store, intent_set.config)
    finally:
        store.close()
    measured = plans.escalation_rate
    if measured is None:
        raise InputError(
            "--escalation-rate log: no cascade plan in the log has had its answer checked "
            "(POST /escalate with the decision id) yet; give a number instead"
        )
    print(
        f"escalation rate from the log: {plans.escalated} of "
        f"{plans.checked} checked plans escalated ({100 * measured:.1f}%)",
        file=sys.stderr,
    )
    return measured


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


def run_logs(args: argparse.Namespace, encoder: Encoder | None) -> int:
    """Reads the log only: ``encoder`` is accepted for a uniform signature and unused."""
    from modeltriage.core.intents import load_intents
    from modeltriage.log.aggregate import summarise_store
    from modeltriage.log.open import open_store
    from modeltriage.log.report import format_recent, format_summary
    from modeltriage.log.urls import configured_log_url

    intent_set = load_intents(args.intents)
    url = configured_log_url(intent_set.config.log, args.intents, args.url or None)
    if url is None:
        raise InputError("decision logging is off: no log.url in router.yaml and no --url")
    since = _parse_since(args.since)
    if args.limit < 0:
        raise InputError("--limit must be 0 or more")
    store = open_store(url)
    # Aggregated in the database and only the recent rows read: a log of millions of
    # decisions is summarised in bounded memory.
    try:
        summary = summarise_store(store, intent_set.config, since)
        recent = store.decisions(limit=args.limit, since=since) if args.limit else []
    finally:
        store.close()
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


# More workers than this on one host is a mistake, not a deployment (use replicas).
MAX_WORKERS = 64


def run_serve(args: argparse.Namespace, encoder: Encoder | None) -> int:
    try:
        import uvicorn
    except ImportError:
        from modeltriage.errors import MissingDependencyError

        raise MissingDependencyError("uvicorn", "serve") from None
    if not 1 <= args.workers <= MAX_WORKERS:
        raise InputError(f"--workers must be from 1 to {MAX_WORKERS}, got {args.workers}")
    import os

    from modeltriage.cli.serving import serve_plan
    from modeltriage.http.app import create_app, encoder_from_env
    from modeltriage.http.header_guard import HEADER_TIMEOUT_ENV
    from modeltriage.http.observe import json_logging
    from modeltriage.reloader import ServingRouter

    # Checked before loading: an exposed open service or a bad keys file is one line.
    plan = serve_plan(args)
    # What the header deadline of uvicorn's protocol (http/header_guard.py) reads.
    os.environ[HEADER_TIMEOUT_ENV] = repr(plan.header_timeout_s)
    if plan.json_logs:
        json_logging()
    given = encoder is not None
    encoder = encoder_from_env() if encoder is None else encoder
    if args.ray:
        return _serve_ray(args, encoder, plan, injected=given)
    if args.workers > 1:
        if args.watch or args.keep_last_good:
            # Each worker loads the index the parent built and never builds: a reload
            # in one worker would leave the others serving the old index.
            raise InputError(
                "--watch and --keep-last-good serve one process: drop them, or use "
                "--workers 1 (restart the workers to serve a rebuilt index)"
            )
        return _serve_workers(args, encoder, plan, injected=given)
    # Load before starting the server so a bad config is a one-line error, not a trace.
    try:
        holder = ServingRouter.load(
            args.intents,
            encoder=encoder,
            build_if_needed=not args.no_build,
            keep_last_good=args.keep_last_good,
        )
    except IndexStateError as exc:
        if not args.no_build or args.keep_last_good:
            raise
        raise type(exc)(
            f"{exc}; or serve without --no-build (builds it at start), or with "
            "--keep-last-good (serves the last index that served)"
        ) from None
    manifest = holder.router.manifest
    if holder.serving == "last-good":
        print(
            f"modeltriage: warning: {holder.last_error}\nmodeltriage: --keep-last-good: "
            f"serving the last good index {manifest.version} (built {manifest.built_at}); "
            "fix the files, then reload (SIGHUP or POST /admin/reload)",
            file=sys.stderr,
        )
    print(
        f"modeltriage: {manifest.intents} intents, index {manifest.version}; "
        f"serving on http://{args.host}:{args.port} (docs at /docs, explorer at /ui); "
        f"{plan.keys!r}",
        file=sys.stderr,
    )
    for warning in plan.warnings:
        print(f"modeltriage: warning: {warning}", file=sys.stderr)
    app = create_app(
        holder=holder,
        watch=args.watch,
        keys=plan.keys,
        cors_origins=plan.cors_origins,
        samples_dir=args.samples,
    )
    with holder:
        # Uvicorn drains running requests on SIGTERM/SIGINT before the lifespan ends and
        # closes the holder, which flushes the decision log.
        uvicorn.run(app, host=args.host, port=args.port, **plan.uvicorn)
    return 0


def _serve_workers(
    args: argparse.Namespace, encoder: Encoder | None, plan: ServePlan, *, injected: bool
) -> int:
    """``serve --workers N``: build (once, here) and check the index and the log, then let
    uvicorn's supervisor run N workers, each loading the built index memory-mapped and
    writing the shared decision log; it restarts a worker that dies."""
    import os

    import uvicorn

    from modeltriage.http.app import WORKERS_ENV

    manifest = _build_for_workers(args, encoder, plan, injected=injected)
    os.environ[WORKERS_ENV] = str(args.workers)
    print(
        f"modeltriage: {manifest.intents} intents, index {manifest.version}; {args.workers} "
        f"workers serving on http://{args.host}:{args.port} (docs at /docs)",
        file=sys.stderr,
    )
    uvicorn.run(
        "modeltriage.http.app:app_from_env",
        factory=True,
        workers=args.workers,
        host=args.host,
        port=args.port,
        **plan.uvicorn,
    )
    return 0


def _build_for_workers(
    args: argparse.Namespace, encoder: Encoder | None, plan: ServePlan, *, injected: bool
) -> Manifest:
    """What ``--workers N`` and ``--ray`` do first: build (once, here) and check the index
    and the log, then put in the environment what each worker or replica reads."""
    import os
    from pathlib import Path

    from modeltriage.cli.serving import worker_environment
    from modeltriage.http.app import INTENTS_ENV, SAMPLES_ENV
    from modeltriage.router import Router

    if injected:
        raise InputError(
            "an encoder object cannot reach worker processes: name its factory in "
            "$MODELTRIAGE_ENCODER_FACTORY (module:callable) instead"
        )
    # The parent builds a missing or stale index and migrates the log before any worker
    # starts: workers only load, so N of them never race to build.
    with Router.load(args.intents, encoder=encoder, build_if_needed=not args.no_build) as router:
        manifest = router.manifest
    os.environ[INTENTS_ENV] = str(Path(args.intents).resolve())
    # Resolved here: a worker or replica may not start in this directory.
    os.environ[SAMPLES_ENV] = str(Path(args.samples).resolve())
    # Workers are new processes: they read the keys and origins the plan settled on.
    os.environ.update(worker_environment(plan))
    return manifest


def _serve_ray(
    args: argparse.Namespace, encoder: Encoder | None, plan: ServePlan, *, injected: bool
) -> int:
    """``serve --ray``: check the Ray Serve config, build the index here, then deploy the
    config on a local single-node Ray until SIGINT or SIGTERM."""
    from pathlib import Path

    if args.workers != 1:
        raise InputError("--ray runs Ray Serve replicas: set them in --ray-config, not --workers")
    if args.watch or args.keep_last_good:
        raise InputError("--watch and --keep-last-good are not available with --ray")
    from modeltriage.http import ray_run

    config = ray_run.read_serve_config(args.ray_config)
    config = ray_run.with_overrides(
        config, intents_dir=Path(args.intents).resolve(), host=args.host, port=args.port
    )
    schema = ray_run.checked(config, args.ray_config)
    manifest = _build_for_workers(args, encoder, plan, injected=injected)
    print(
        f"modeltriage: {manifest.intents} intents, index {manifest.version}; starting Ray "
        f"Serve from {args.ray_config} on http://{args.host}:{args.port}",
        file=sys.stderr,
    )
    for warning in plan.warnings:
        print(f"modeltriage: warning: {warning}", file=sys.stderr)
    ray_run.serve_until_stopped(schema, args.ray_config)
    return 0


def _recall_note(manifest: Manifest) -> str:
    if manifest.recall is None or manifest.recall_k is None:
        return " (exact search)"
    recall = f"{manifest.recall:.3f}"
    return f", recall@{manifest.recall_k} against exact search {recall} (measured at build)"
