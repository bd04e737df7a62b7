"""What the decision log keeps: decisions, feedback and events, validated so that what
is written comes back as it was. No I/O here (see :mod:`.store`, :mod:`.writer`).
"""

from __future__ import annotations

import dataclasses
import hashlib
import math
import re
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Literal, TypeVar

from modeltriage.core.decision import Decision
from modeltriage.errors import InvalidEntryError

MetadataValue = str | int | float | bool | None
Metadata = Mapping[str, MetadataValue]

MAX_SOURCE_LENGTH = 64


def _utcnow() -> datetime:
    return datetime.now(timezone.utc)


def _as_utc(value: datetime, what: str) -> datetime:
    if value.tzinfo is None or value.utcoffset() is None:
        raise InvalidEntryError(f"{what} must be timezone-aware, got naive {value.isoformat()}")
    return value.astimezone(timezone.utc)


def check_query(limit: int | None, since: datetime | None) -> datetime | None:
    """A store query's ``since`` in UTC, after refusing a negative ``limit`` or a naive time."""
    if limit is not None and limit < 0:
        raise InvalidEntryError(f"limit must not be negative, got {limit}")
    return None if since is None else _as_utc(since, "since")


def text_sha256(text: str) -> str:
    """Hex SHA-256 of the UTF-8 text; lone surrogates are hashed rather than rejected."""
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()


_SURROGATE = re.compile("[\ud800-\udfff]")
REPLACEMENT = "\ufffd"


def readable(value: str) -> str:
    """``value`` with each lone surrogate (a byte that was not UTF-8, read with
    ``surrogateescape``, or an escape that slipped in) replaced by U+FFFD."""
    return _SURROGATE.sub(REPLACEMENT, value)


def _readable_value(value: Any) -> tuple[MetadataValue, bool]:
    if isinstance(value, str):
        clean = readable(value)
        return clean, clean != value
    if isinstance(value, float) and not math.isfinite(value):
        return None, True
    if value is None or isinstance(value, (bool, int, float)):
        return value, False
    return None, True


def repair_stored(values: dict[str, Any]) -> dict[str, Any]:
    """The columns of a stored decision made fit to read and send: lone surrogates become
    U+FFFD, a metadata or fallbacks column that is not what it should be becomes empty,
    a value JSON cannot carry becomes null; ``repaired`` says whether anything changed.
    A row written by something else than this library must never break a read."""
    repaired = False
    out: dict[str, Any] = {}
    for key, value in values.items():
        if isinstance(value, str):
            out[key] = readable(value)
            repaired = repaired or out[key] != value
        else:
            out[key] = value
    metadata = out.get("metadata")
    if not isinstance(metadata, Mapping):
        out["metadata"], repaired = {}, repaired or metadata is not None
    else:
        clean_metadata: dict[str, MetadataValue] = {}
        for key, value in metadata.items():
            clean_key = readable(str(key))
            clean_metadata[clean_key], changed = _readable_value(value)
            repaired = repaired or changed or clean_key != key
        out["metadata"] = clean_metadata
    fallbacks = out.get("fallbacks", ())
    if not isinstance(fallbacks, (list, tuple)) or not all(isinstance(f, str) for f in fallbacks):
        out["fallbacks"], repaired = (), True
    else:
        out["fallbacks"] = tuple(readable(f) for f in fallbacks)
        repaired = repaired or out["fallbacks"] != tuple(fallbacks)
    out["repaired"] = repaired
    return out


def _checked_metadata(metadata: Metadata) -> dict[str, MetadataValue]:
    checked: dict[str, MetadataValue] = {}
    for key, value in metadata.items():
        if not isinstance(key, str):
            raise InvalidEntryError(f"metadata keys must be strings, got {key!r}")
        if value is not None and not isinstance(value, (str, int, float, bool)):
            raise InvalidEntryError(
                f"metadata {key!r} must be a string, number, boolean or null, "
                f"got {type(value).__name__}"
            )
        # JSON has no NaN or infinity, so such a value would not come back as written.
        if isinstance(value, float) and not math.isfinite(value):
            raise InvalidEntryError(f"metadata {key!r} must be a finite number, got {value}")
        checked[key] = value
    return checked


_Entry = TypeVar("_Entry", bound="_JsonEntry")


class _JsonEntry:
    """JSON round trip of an entry: fields as they are, ``created_at`` in ISO 8601, tuples
    as lists."""

    created_at: datetime

    def to_json_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)  # type: ignore[call-overload]
        data["created_at"] = self.created_at.isoformat()
        return {k: list(v) if isinstance(v, tuple) else v for k, v in data.items()}

    @classmethod
    def from_json_dict(cls: type[_Entry], data: Mapping[str, Any]) -> _Entry:
        values = dict(data)
        values["created_at"] = datetime.fromisoformat(values["created_at"])
        return cls(**values)


@dataclass(frozen=True)
class LogEntry(_JsonEntry):
    """One routed request, as the log keeps it."""

    decision_id: str
    created_at: datetime
    text: str | None
    text_sha256: str
    intent: str | None
    runner_up: str | None
    difficulty: str | None
    tier: str
    model: str
    confidence: float
    margin: float | None
    cascaded: bool
    reason: str
    estimated_cost_usd: float
    latency_ms: float
    index_version: str
    metadata: Metadata = field(default_factory=dict)
    # The token estimate behind estimated_cost_usd; None in rows logged before schema 3.
    input_tokens: int | None = None
    # The failover chain and the cascade plan's model, so a decision can be acted on by
    # id alone (/next-model, /escalate); empty and None in rows logged before schema 4.
    fallbacks: tuple[str, ...] = ()
    cascade_to: str | None = None
    second_opinion: str | None = None
    # Set when reading a stored row that had to be mended (see repair_stored): a value
    # was not valid Unicode or not what its column holds. Not stored.
    repaired: bool = field(default=False, compare=False)

    def __post_init__(self) -> None:
        if not self.decision_id:
            raise InvalidEntryError("decision_id must not be empty")
        object.__setattr__(self, "created_at", _as_utc(self.created_at, "created_at"))
        object.__setattr__(self, "metadata", _checked_metadata(self.metadata))
        object.__setattr__(self, "fallbacks", tuple(self.fallbacks))

    @classmethod
    def from_decision(
        cls,
        decision: Decision,
        text: str,
        *,
        store_text: bool = True,
        metadata: Metadata | None = None,
        at: datetime | None = None,
    ) -> LogEntry:
        """The entry for ``decision``; ``store_text=False`` keeps only the text's hash."""
        return cls(
            decision_id=decision.id,
            created_at=_utcnow() if at is None else at,
            text=text if store_text else None,
            text_sha256=text_sha256(text),
            intent=decision.intent,
            runner_up=decision.runner_up,
            difficulty=decision.difficulty,
            tier=decision.tier,
            model=decision.model,
            confidence=decision.confidence,
            margin=decision.margin,
            cascaded=decision.cascaded,
            reason=decision.reason,
            estimated_cost_usd=decision.estimated_cost_usd,
            latency_ms=decision.latency_ms,
            index_version=decision.index_version,
            metadata={} if metadata is None else metadata,
            input_tokens=decision.input_tokens,
            fallbacks=tuple(decision.fallbacks),
            cascade_to=None if decision.cascade is None else decision.cascade.escalate_to,
            second_opinion=None if decision.cascade is None else decision.cascade.second_opinion,
        )


@dataclass(frozen=True)
class FeedbackEntry(_JsonEntry):
    """A quality signal (0 = useless, 1 = perfect) for one logged decision."""

    decision_id: str
    quality: float
    source: str
    model: str | None = None
    created_at: datetime = field(default_factory=_utcnow)

    def __post_init__(self) -> None:
        if not self.decision_id:
            raise InvalidEntryError("decision_id must not be empty")
        quality = self.quality
        # bool is an int: True would silently become a perfect score.
        if isinstance(quality, bool) or not isinstance(quality, (int, float)):
            raise InvalidEntryError(f"quality must be a number from 0 to 1, got {quality!r}")
        if not 0.0 <= quality <= 1.0:  # also false for NaN
            raise InvalidEntryError(f"quality must be from 0 to 1, got {quality}")
        source = self.source.strip() if isinstance(self.source, str) else ""
        if not source or len(source) > MAX_SOURCE_LENGTH:
            raise InvalidEntryError(
                f"source must be a non-empty string of at most {MAX_SOURCE_LENGTH} characters, "
                f"got {self.source!r}"
            )
        object.__setattr__(self, "quality", float(quality))
        object.__setattr__(self, "source", source)
        object.__setattr__(self, "created_at", _as_utc(self.created_at, "created_at"))


EventKind = Literal["failover", "escalation"]
EVENT_KINDS: tuple[EventKind, ...] = ("failover", "escalation")


@dataclass(frozen=True)
class EventEntry(_JsonEntry):
    """What happened after a decision: a failover (``model`` failed, ``to_model`` is
    next) or an answer check (``model`` answered; ``to_model`` is set when escalated).
    ``decision_id`` is None when the caller gave a chain or a model but no id."""

    kind: EventKind
    model: str
    to_model: str | None
    detail: str
    decision_id: str | None = None
    created_at: datetime = field(default_factory=_utcnow)
    # Unique per event, so writing it twice (a retry, a spool replayed twice) stores it once.
    event_id: str = field(default_factory=lambda: uuid.uuid4().hex)

    def __post_init__(self) -> None:
        if not self.event_id:
            raise InvalidEntryError("event_id must not be empty")
        if self.kind not in EVENT_KINDS:
            raise InvalidEntryError(f"event kind must be one of {EVENT_KINDS}, got {self.kind!r}")
        if not self.model:
            raise InvalidEntryError("an event needs the model it is about")
        if self.decision_id == "":
            raise InvalidEntryError("decision_id must not be empty")
        object.__setattr__(self, "created_at", _as_utc(self.created_at, "created_at"))


Entry = LogEntry | EventEntry
