"""`modeltriage mine`: turn the requests the router did not know into proposals.

Logged requests that were ``no_match`` or ``low_margin``, or whose feedback was poor, are
routed again with today's intents, embedded and clustered (:mod:`.clustering`). A
cluster mostly without a match becomes a proposed new intent; any other becomes new
exemplars for the intent most of it routes to now. The proposals are written as a YAML
patch for a person to review: nothing is ever applied to the intent files.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, replace
from datetime import datetime
from pathlib import Path
from typing import Literal

import numpy as np
import yaml

from modeltriage.core.encoders import Encoder
from modeltriage.core.intents import IntentSet, load_intent_documents
from modeltriage.errors import InputError
from modeltriage.learn.clustering import cluster_labels, default_cluster_count
from modeltriage.learn.lint import index_for_lint
from modeltriage.loading import encoder_for
from modeltriage.log.entries import FeedbackEntry, LogEntry
from modeltriage.log.open import open_store
from modeltriage.log.urls import configured_log_url
from modeltriage.router import Router, route_all

MISSED_REASONS = ("no_match", "low_margin")


def _read_log(
    intent_set: IntentSet, url: str | None, since: datetime | None
) -> tuple[list[LogEntry], list[FeedbackEntry]]:
    base = Path(".") if intent_set.source is None else intent_set.source
    resolved = configured_log_url(intent_set.config.log, base, url)
    if resolved is None:
        raise InputError("decision logging is off: no log.url in router.yaml and no --url")
    store = open_store(resolved)
    try:
        return store.decisions(since=since), store.feedback()
    finally:
        store.close()


def logged_texts(intent_set: IntentSet, url: str | None, since: datetime | None) -> list[str]:
    """The stored texts of the logged decisions, oldest first (hash-only rows skipped)."""
    entries, _ = _read_log(intent_set, url, since)
    return [e.text for e in reversed(entries) if e.text is not None]


@dataclass(frozen=True)
class Proposal:
    """New exemplars for an existing intent, or a new intent, with the evidence."""

    action: Literal["add_exemplars", "new_intent"]
    intent: str
    requests: int
    why: dict[str, int]
    exemplars: list[str]
    file: str | None = None


@dataclass(frozen=True)
class MiningResult:
    scanned: int
    candidates: int
    proposals: list[Proposal] = field(default_factory=list)
    message: str | None = None  # why there is nothing to mine

    def as_dict(self) -> dict[str, object]:
        return asdict(self)


def missed_requests(
    entries: Sequence[LogEntry], feedback: Sequence[FeedbackEntry], poor_quality: float
) -> list[tuple[LogEntry, str]]:
    """Decisions worth mining, each with why: its reason, or ``poor_feedback`` when the
    mean quality it was given is below ``poor_quality``."""
    qualities: defaultdict[str, list[float]] = defaultdict(list)
    for fb in feedback:
        qualities[fb.decision_id].append(fb.quality)
    out = []
    for entry in entries:
        rated = qualities.get(entry.decision_id)
        if entry.reason in MISSED_REASONS:
            out.append((entry, entry.reason))
        elif rated and sum(rated) / len(rated) < poor_quality:
            out.append((entry, "poor_feedback"))
    return out


def mine_log(
    intents_dir: Path | str,
    encoder: Encoder | None = None,
    *,
    url: str | None = None,
    since: datetime | None = None,
    poor_quality: float = 0.5,
    clusters: int | None = None,
    examples: int = 5,
) -> MiningResult:
    """Mine the decision log of ``intents_dir`` (see the module docstring)."""
    intent_set, docs = load_intent_documents(intents_dir)
    entries, feedback = _read_log(intent_set, url, since)
    if not entries:
        window = "" if since is None else f" since {since.isoformat(timespec='seconds')}"
        return MiningResult(0, 0, message=f"the decision log is empty{window}: nothing to mine")
    missed = missed_requests(entries, feedback, poor_quality)
    if not missed:
        return MiningResult(
            len(entries),
            0,
            message=f"{len(entries)} logged decisions, none no_match, low_margin or poorly "
            "rated: nothing to mine",
        )
    with_text = [(e.text, why) for e, why in missed if e.text is not None]
    if not with_text:
        return MiningResult(
            len(entries),
            len(missed),
            message=f"{len(missed)} requests to mine, but the log keeps no texts "
            "(log.store_text: false stores only a hash): nothing to mine",
        )
    encoder = encoder_for(intent_set) if encoder is None else encoder
    proposals = [
        replace(p, file=str(docs[p.intent].path))
        if p.action == "add_exemplars" and p.intent in docs
        else p
        for p in propose(intent_set, encoder, with_text, clusters, examples)
    ]
    return MiningResult(len(entries), len(missed), proposals)


def propose(
    intent_set: IntentSet,
    encoder: Encoder,
    missed: Sequence[tuple[str, str]],
    clusters: int | None,
    examples: int,
) -> list[Proposal]:
    """Cluster the missed ``(text, why)`` pairs and turn each cluster into a proposal."""
    counts = Counter(text for text, _ in missed)
    whys: defaultdict[str, Counter[str]] = defaultdict(Counter)
    for text, why in missed:
        whys[text][why] += 1
    texts = list(counts)
    loaded, _ = index_for_lint(intent_set, encoder)
    router = Router(intent_set, encoder, loaded)
    decisions = route_all(router, texts)
    vectors = encoder.encode([intent_set.config.scoring.view(t) for t in texts])
    count = default_cluster_count(len(texts)) if clusters is None else clusters
    labels = [0] * len(texts) if len(texts) < 2 else cluster_labels(vectors, min(count, len(texts)))
    known = {e.text.casefold() for i in intent_set.intents for e in i.exemplars}
    proposals = []
    for label in sorted(set(labels)):
        members = [i for i, x in enumerate(labels) if x == label]
        centroid = vectors[members].mean(axis=0)
        nearest = sorted(members, key=lambda i: -float(np.dot(vectors[i], centroid)))
        picked = [texts[i] for i in nearest if texts[i].casefold() not in known][:examples]
        if not picked:
            continue
        unmatched = sum(decisions[i].intent is None for i in members)
        reasons: Counter[str] = Counter()
        for i in members:
            reasons.update(whys[texts[i]])
        total = sum(counts[texts[i]] for i in members)
        if unmatched * 2 > len(members):
            name = f"proposed_{label:02d}"
            proposals.append(Proposal("new_intent", name, total, dict(reasons), picked))
            continue
        routed = Counter(str(decisions[i].intent) for i in members if decisions[i].intent)
        target = routed.most_common(1)[0][0]
        proposals.append(Proposal("add_exemplars", target, total, dict(reasons), picked))
    return sorted(proposals, key=lambda p: (-p.requests, p.intent))


def write_proposals(result: MiningResult, out: Path, intents_dir: Path | None = None) -> None:
    """Write the YAML patch; refuses a path where it would be read as an intent file."""
    if intents_dir is not None and out.resolve().parent == Path(intents_dir).resolve():
        raise InputError(f"--out {out}: inside the intents directory it would load as an intent")
    header = (
        "# Proposals mined from the decision log by `modeltriage mine`: NOT applied.\n"
        "# Review each: copy the exemplars you agree with into the intent file named, or\n"
        "# make a new intent file from a new_intent proposal (choose its name and difficulty),\n"
        "# then run `modeltriage lint` and `modeltriage diff`.\n"
    )
    body = yaml.safe_dump(
        {"proposals": [asdict(p) for p in result.proposals]},
        sort_keys=False,
        allow_unicode=True,
        width=100,
    )
    try:
        out.write_text(header + body, encoding="utf-8")
    except OSError as exc:
        raise InputError(f"--out {out}: {exc.strerror}") from None


def format_mining(result: MiningResult, out: Path) -> str:
    lines = [
        f"{result.candidates} of {result.scanned} logged requests were no_match, low_margin "
        f"or poorly rated: {len(result.proposals)} proposals written to {out} (not applied)"
    ]
    for p in result.proposals:
        why = ", ".join(f"{k} {v}" for k, v in sorted(p.why.items()))
        target = f"new intent {p.intent}" if p.action == "new_intent" else f"add to {p.intent}"
        lines.append(f"  {p.requests:>5} requests  {target:<36} ({why})")
        lines += [f"           “{t}”" for t in p.exemplars[:3]]
    return "\n".join(lines)
