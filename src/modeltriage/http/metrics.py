"""Prometheus metrics of one app, in a registry of its own (no module globals, so two
apps in one process count apart). ``GET /metrics`` renders them.

Counted as they happen: requests and their latency per endpoint, decisions per tier,
model, reason and intent, cascade plans, estimated spend, reloads. Read at scrape time
from the router the app serves now: the decision log's queue depth, drops and write
errors, the index version, failovers, unhealthy models and the request cache's hits and
misses (its hit rate is hits over both).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence

from modeltriage.core.decision import Decision
from modeltriage.errors import MissingDependencyError
from modeltriage.router import Router

try:
    from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
    from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
    from prometheus_client.registry import Collector
except ImportError:  # pragma: no cover - exercised only without the extra
    raise MissingDependencyError("prometheus_client", "serve") from None

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
# Routing takes milliseconds; a batch or a slow encoder seconds.
_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


class _RouterCollector(Collector):
    """What the served router knows, read when scraped."""

    def __init__(self, router: Callable[[], Router | None]) -> None:
        self._router = router

    def collect(self) -> Iterable[Metric]:
        router = self._router()
        if router is None:
            return []
        return list(self._families(router))

    def _families(self, router: Router) -> Iterator[Metric]:
        manifest = router.manifest
        info = GaugeMetricFamily(
            "modeltriage_index_info", "the index served (value 1)", labels=["version", "encoder"]
        )
        info.add_metric([manifest.version, manifest.encoder], 1)
        yield info
        yield CounterMetricFamily(
            "modeltriage_failovers", "POST /next-model requests", value=router.failovers
        )
        yield GaugeMetricFamily(
            "modeltriage_unhealthy_models",
            "models marked unhealthy now",
            value=len(router.unhealthy_models()),
        )
        cache = router.query_cache
        yield CounterMetricFamily(
            "modeltriage_query_cache_hits", "request texts served from the cache", value=cache.hits
        )
        yield CounterMetricFamily(
            "modeltriage_query_cache_misses", "request texts embedded anew", value=cache.misses
        )
        logger = router.logger
        if logger is None:
            return
        yield GaugeMetricFamily(
            "modeltriage_log_queue_depth", "log entries waiting to be written", value=logger.pending
        )
        yield CounterMetricFamily(
            "modeltriage_log_written", "log entries written", value=logger.written
        )
        yield CounterMetricFamily(
            "modeltriage_log_dropped", "log entries dropped (queue full)", value=logger.dropped
        )
        yield CounterMetricFamily(
            "modeltriage_log_write_errors", "failed log writes", value=logger.errors
        )


class ServiceMetrics:
    """The metrics of one app (``app.state.metrics``). A reload calls :meth:`reloaded`
    (or ``reloads.inc()`` / ``reload_failures.inc()``)."""

    def __init__(self, router: Callable[[], Router | None]) -> None:
        self.registry = CollectorRegistry()
        registry = self.registry
        self.requests = Counter(
            "modeltriage_http_requests",
            "HTTP requests by endpoint (route template), method and status",
            ["endpoint", "method", "status"],
            registry=registry,
        )
        self.latency = Histogram(
            "modeltriage_http_request_duration_seconds",
            "HTTP request latency by endpoint",
            ["endpoint"],
            buckets=_BUCKETS,
            registry=registry,
        )
        self.decisions = Counter(
            "modeltriage_decisions",
            "routing decisions by tier, model, reason and intent",
            ["tier", "model", "reason", "intent"],
            registry=registry,
        )
        self.cascades = Counter(
            "modeltriage_cascade_plans",
            "decisions with a cascade plan (cascade rate: this over modeltriage_decisions)",
            registry=registry,
        )
        self.spend = Counter(
            "modeltriage_estimated_spend_usd",
            "estimated cost of the routed requests, by model",
            ["model"],
            registry=registry,
        )
        self.reloads = Counter(
            "modeltriage_reloads", "successful reloads of the intents", registry=registry
        )
        self.reload_failures = Counter(
            "modeltriage_reload_failures",
            "reloads refused (the old router kept serving)",
            registry=registry,
        )
        registry.register(_RouterCollector(router))

    def request(self, endpoint: str, method: str, status: int, seconds: float) -> None:
        self.requests.labels(endpoint, method, str(status)).inc()
        self.latency.labels(endpoint).observe(seconds)

    def decided(self, decisions: Sequence[Decision]) -> None:
        for d in decisions:
            self.decisions.labels(d.tier, d.model, d.reason, d.intent or "none").inc()
            if d.cascade is not None:
                self.cascades.inc()
            self.spend.labels(d.model).inc(d.estimated_cost_usd)

    def reloaded(self, ok: bool) -> None:
        (self.reloads if ok else self.reload_failures).inc()

    def render(self) -> bytes:
        return generate_latest(self.registry)
