"""The samples the router explorer sweeps: a traffic or labelled file (by default the
shipped ``examples/traffic/``), or the last logged decisions. Each is routed once, without
being logged, and keeps its neighbours for :class:`~.explore.ThresholdExplorer`."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from modeltriage.errors import InputError
from modeltriage.learn.explore import Settings, ThresholdExplorer
from modeltriage.learn.simulation import TrafficRow, read_traffic
from modeltriage.learn.tuning import QualityModel, cases_from_routes
from modeltriage.learn.tuning_cases import TuningCases, labelled_cases, log_cases
from modeltriage.log.entries import LogEntry
from modeltriage.router import Router, route_all

LOG_SAMPLE = "log"
MAX_LOG_SAMPLE = 100_000


@dataclass(frozen=True)
class Sample:
    """A routed sample: its rows (for ``simulate``), cases (for ``tune``) and explorer."""

    name: str
    rows: list[TrafficRow]
    found: TuningCases
    explorer: ThresholdExplorer

    @property
    def labelled(self) -> bool:
        return any(c.expected_intent is not None or c.measured for c in self.found.cases)


def sample_files(directory: Path) -> dict[str, Path]:
    """The JSON-lines files of ``directory`` by name: the only files a caller may pick."""
    if not directory.is_dir():
        return {}
    return {p.name: p for p in sorted(directory.glob("*.jsonl")) if p.is_file()}


def _explorer(router: Router, found: TuningCases) -> ThresholdExplorer:
    intents = {i.name: i for i in router.intent_set.intents}
    explorer = ThresholdExplorer(found.cases, router.config, intents, found.quality)
    explorer.point(Settings.of(router.config))  # decide every branch once, now
    return explorer


def file_sample(router: Router, path: Path) -> Sample:
    """A traffic file (``text``, optional ``expected_intent`` and ``expected_difficulty``)
    or a labelled one; labels, where present, estimate quality as ``tune --labelled``."""
    rows = read_traffic(path)
    if any(r.expected_intent is not None for r in rows):
        found = labelled_cases(router, path, log=False)
    else:
        texts = [r.text for r in rows]
        decisions = route_all(router, texts, explain=True, log=False)
        cases = cases_from_routes(texts, [d.neighbours for d in decisions], router.config)
        quality = QualityModel(router.config, {i.name: i for i in router.intent_set.intents})
        found = TuningCases(cases, quality, "no labels: quality is not estimated")
    return Sample(path.name, rows, found, _explorer(router, found))


def log_sample(router: Router, last: int) -> Sample:
    """The ``last`` logged decisions that kept their text, with their feedback."""
    logger = router.logger
    if logger is None:
        raise InputError("decision logging is off (no log.url in router.yaml)")
    if not 1 <= last <= MAX_LOG_SAMPLE:
        raise InputError(f"last must be from 1 to {MAX_LOG_SAMPLE}, got {last}")
    logger.flush(timeout=2.0)
    entries = logger.store.decisions(limit=last)
    found = log_cases(router, entries, logger.store.feedback(), logger.store.url, log=False)
    rows = [TrafficRow(e.text) for e in entries if e.text is not None]
    return Sample(LOG_SAMPLE, rows, found, _explorer(router, found))


def filter_entries(
    entries: Sequence[LogEntry],
    *,
    reason: str | None = None,
    tier: str | None = None,
    intent: str | None = None,
    limit: int = 50,
) -> list[LogEntry]:
    """The first ``limit`` of ``entries`` with the given reason, tier and intent (None:
    any; an empty intent: no intent matched)."""
    kept = [
        e
        for e in entries
        if (reason is None or e.reason == reason)
        and (tier is None or e.tier == tier)
        and (intent is None or (e.intent or "") == intent)
    ]
    return kept[:limit]


DEFAULT_SAMPLE = "support_day.jsonl"
# A log sample is re-read after this long: new decisions come in while the page is open.
LOG_SAMPLE_TTL_S = 30.0


class SampleCache:
    """Samples by name, each routed once; a file can only be one of ``directory``'s."""

    def __init__(
        self, router: Router, directory: Path, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.router = router
        self.directory = directory
        self._clock = clock
        self._lock = threading.Lock()
        self._samples: dict[tuple[str, int], tuple[float, Sample]] = {}

    def files(self) -> dict[str, Path]:
        return sample_files(self.directory)

    def default(self) -> str | None:
        files = self.files()
        if DEFAULT_SAMPLE in files:
            return DEFAULT_SAMPLE
        if files:
            return next(iter(files))
        return LOG_SAMPLE if self.router.logger is not None else None

    def examples(self, count: int = 40) -> list[str]:
        """Requests of the default file sample, to pick from (nothing routed)."""
        path = self.files().get(self.default() or "")
        if path is None:
            return []
        rows = read_traffic(path)
        return [row.text for row in rows[:: max(1, len(rows) // count)]][:count]

    def get(self, name: str, last: int = 1000) -> Sample:
        """The sample ``name`` (a file of the directory, or ``log``); "" is the default."""
        name = name or (self.default() or "")
        key = (name, last if name == LOG_SAMPLE else 0)
        with self._lock:
            cached = self._samples.get(key)
            now = self._clock()
            if cached is not None and (name != LOG_SAMPLE or now - cached[0] < LOG_SAMPLE_TTL_S):
                return cached[1]
            if name == LOG_SAMPLE:
                sample = log_sample(self.router, last)
            else:
                path = self.files().get(name)
                if path is None:
                    logged = [LOG_SAMPLE] if self.router.logger is not None else []
                    known = ", ".join([*self.files(), *logged]) or "none"
                    raise InputError(f"unknown sample {name[:100]!r}; samples: {known}")
                sample = file_sample(self.router, path)
            self._samples[key] = (now, sample)
            return sample
