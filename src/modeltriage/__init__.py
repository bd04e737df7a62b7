"""modeltriage: send each LLM request to the cheapest model that can still answer it.

Importing this package is cheap: torch, sentence-transformers and FAISS load only when
a router is built or loaded. Everything a user needs is re-exported here; the modules
behind it are laid out by layer (see docs/design.md).
"""

from importlib.metadata import PackageNotFoundError, version

from modeltriage.core.config import RouterConfig
from modeltriage.core.decision import CascadePlan, Decision, Message, Neighbour
from modeltriage.core.encoders import Encoder, HashingEncoder, SentenceTransformerEncoder
from modeltriage.core.failover import Failover
from modeltriage.core.index import Manifest
from modeltriage.core.intents import IntentSet, load_intents
from modeltriage.core.onnx_encoder import OnnxEncoder
from modeltriage.core.oos_score import OosScore
from modeltriage.core.options import RouteOptions
from modeltriage.core.query_cache import CacheStats
from modeltriage.errors import (
    AdapterError,
    ConfigError,
    EvaluationError,
    IndexMissingError,
    IndexStateError,
    InputError,
    InvalidEntryError,
    LogStoreError,
    MissingDependencyError,
    ModelTriageError,
    OverloadedError,
    StaleIndexError,
    UnknownDecisionError,
)
from modeltriage.followup.answers import Answer, Escalation
from modeltriage.loading import build_index
from modeltriage.log.entries import EventEntry, FeedbackEntry, LogEntry
from modeltriage.log.memory import MemoryStore
from modeltriage.log.store import LogStore
from modeltriage.log.writer import DecisionLogger
from modeltriage.router import Router

try:
    __version__ = version("modeltriage")
except PackageNotFoundError:  # a source tree on sys.path without an install
    __version__ = "0+unknown"

__all__ = [
    "AdapterError",
    "Answer",
    "CacheStats",
    "CascadePlan",
    "ConfigError",
    "Decision",
    "DecisionLogger",
    "Encoder",
    "Escalation",
    "EvaluationError",
    "EventEntry",
    "Failover",
    "FeedbackEntry",
    "HashingEncoder",
    "IndexMissingError",
    "IndexStateError",
    "InputError",
    "IntentSet",
    "InvalidEntryError",
    "LogEntry",
    "LogStore",
    "LogStoreError",
    "Manifest",
    "MemoryStore",
    "Message",
    "MissingDependencyError",
    "ModelTriageError",
    "Neighbour",
    "OnnxEncoder",
    "OosScore",
    "OverloadedError",
    "RouteOptions",
    "Router",
    "RouterConfig",
    "SentenceTransformerEncoder",
    "StaleIndexError",
    "UnknownDecisionError",
    "__version__",
    "build_index",
    "load_intents",
]
