"""modeltriage: send each LLM request to the cheapest model that can still answer it.

Importing this package is cheap: torch, sentence-transformers and FAISS load only when
a router is built or loaded.
"""

from modeltriage.core.config import RouterConfig
from modeltriage.core.decision import Decision, Message, Neighbour
from modeltriage.core.encoders import Encoder, HashingEncoder, SentenceTransformerEncoder
from modeltriage.core.intents import IntentSet, load_intents
from modeltriage.errors import (
    ConfigError,
    IndexMissingError,
    IndexStateError,
    InputError,
    MissingDependencyError,
    ModelTriageError,
    StaleIndexError,
)
from modeltriage.router import Router, build_index

__version__ = "0.1.0"

__all__ = [
    "ConfigError",
    "Decision",
    "Encoder",
    "HashingEncoder",
    "IndexMissingError",
    "IndexStateError",
    "InputError",
    "IntentSet",
    "Message",
    "MissingDependencyError",
    "ModelTriageError",
    "Neighbour",
    "Router",
    "RouterConfig",
    "SentenceTransformerEncoder",
    "StaleIndexError",
    "__version__",
    "build_index",
    "load_intents",
]
