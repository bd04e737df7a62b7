"""A uniform random sample of the logged decisions that kept their text, with their
feedback, for offline work that must re-route each one (`modeltriage tune --log`).

Re-routing a million texts takes the encoder hours, and reading them takes gigabytes;
thresholds need a few thousand. A SQL store draws the sample without reading the log
into memory: it counts the rows with a text, picks positions with a seeded generator,
walks the row numbers (``seq``) a page at a time to find them, then reads only those
rows and their feedback. The per-model feedback means are aggregated over the whole log
in SQL. A log no larger than the sample is returned whole, in the order
:meth:`~modeltriage.log.store.LogStore.decisions` gives it.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from modeltriage.log.entries import FeedbackEntry, LogEntry
from modeltriage.log.sql import ENTRY_COLUMNS, SQLStore
from modeltriage.log.store import LogStore

PAGE = 50_000  # row numbers read per query while looking for the sampled positions
CHUNK = 500  # rows read per IN (...) query


@dataclass(frozen=True)
class LogSample:
    """``entries`` and their ``feedback``: every decision with its text when sampled,
    else the whole log (hash-only ones included); ``with_text`` and
    ``total`` count the whole log; ``model_feedback`` is (rows, summed quality) per
    model named by feedback on decisions with a text, over the whole log (the
    feedback's model, else the decision's), None when nothing was left out."""

    entries: list[LogEntry]
    feedback: list[FeedbackEntry]
    with_text: int
    total: int
    model_feedback: dict[str, tuple[int, float]] | None = field(default=None)

    @property
    def sampled(self) -> bool:
        return self.model_feedback is not None


def sample_log(store: LogStore, size: int, seed: int = 0) -> LogSample:
    """At most ``size`` decisions with their text, drawn uniformly with ``seed``."""
    if size < 1:
        raise ValueError(f"the sample size must be at least 1, got {size}")
    if isinstance(store, SQLStore):
        counts = store.query("SELECT COUNT(*), COUNT(text) FROM decisions")[0]
        total, with_text = int(counts[0]), int(counts[1])
        if with_text > size:
            return _sql_sample(store, size, seed, total, with_text)
    entries = store.decisions()
    kept = [e for e in entries if e.text is not None]
    feedback = store.feedback()
    if len(kept) <= size:
        return LogSample(entries, feedback, len(kept), len(entries))
    # Not SQL: the store holds the log in memory already.
    picked = sorted(random.Random(seed).sample(range(len(kept)), size))
    sample = [kept[i] for i in picked]
    ids = {e.decision_id for e in sample}
    model_of = {e.decision_id: e.model for e in kept}
    by_model: dict[str, tuple[int, float]] = {}
    for fb in feedback:
        if fb.decision_id in model_of:
            model = fb.model or model_of[fb.decision_id]
            n, q = by_model.get(model, (0, 0.0))
            by_model[model] = (n + 1, q + fb.quality)
    mine = [fb for fb in feedback if fb.decision_id in ids]
    return LogSample(sample, mine, len(kept), len(entries), by_model)


def _sql_sample(store: SQLStore, size: int, seed: int, total: int, with_text: int) -> LogSample:
    wanted = sorted(random.Random(seed).sample(range(with_text), size))
    seqs: list[int] = []
    position, last, w = 0, None, 0
    while w < len(wanted):
        after = "" if last is None else " AND seq > ?"
        page = store.query(
            f"SELECT seq FROM decisions WHERE text IS NOT NULL{after} ORDER BY seq LIMIT {PAGE}",
            [] if last is None else [last],
        )
        if not page:
            break
        end = position + len(page)
        while w < len(wanted) and wanted[w] < end:
            seqs.append(int(page[wanted[w] - position][0]))
            w += 1
        position, last = end, page[-1][0]
    entries = _rows(store, seqs)
    ids = [e.decision_id for e in entries]
    return LogSample(entries, _feedback(store, ids), with_text, total, _model_feedback(store))


def _chunks(values: Sequence[Any]) -> list[Sequence[Any]]:
    return [values[i : i + CHUNK] for i in range(0, len(values), CHUNK)]


def _rows(store: SQLStore, seqs: Sequence[int]) -> list[LogEntry]:
    columns = ", ".join(ENTRY_COLUMNS)
    found: list[tuple[Any, int, LogEntry]] = []
    for chunk in _chunks(seqs):
        marks = ", ".join("?" * len(chunk))
        for row in store.query(
            f"SELECT seq, {columns} FROM decisions WHERE seq IN ({marks})", chunk
        ):
            entry = store.decode_entry(row[1:])
            found.append((entry.created_at, int(row[0]), entry))
    # The order of store.decisions(): newest first.
    found.sort(key=lambda item: (item[0], item[1]), reverse=True)
    return [entry for *_, entry in found]


def _feedback(store: SQLStore, ids: Sequence[str]) -> list[FeedbackEntry]:
    out: list[FeedbackEntry] = []
    for chunk in _chunks(ids):
        out += store.feedback_of(chunk)
    return out


def _model_feedback(store: SQLStore) -> dict[str, tuple[int, float]]:
    rows = store.query(
        "SELECT COALESCE(f.model, d.model), COUNT(*), SUM(f.quality) FROM feedback f "
        "JOIN decisions d ON d.decision_id = f.decision_id WHERE d.text IS NOT NULL "
        "GROUP BY COALESCE(f.model, d.model)"
    )
    return {str(model): (int(n), float(q)) for model, n, q in rows}
