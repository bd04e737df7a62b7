"""modeltriage: send each LLM request to the cheapest model that can still answer it.

Importing this package is cheap: torch, sentence-transformers and FAISS load only when
a router is built or loaded.
"""

from .config import IntentSet, RouterConfig, load_intents
from .decision import Decision, Message, Neighbour
from .encoders import Encoder, HashingEncoder, SentenceTransformerEncoder
from .errors import (
    ConfigError,
    IndexMissingError,
    IndexStateError,
    InputError,
    MissingDependencyError,
    ModelTriageError,
    StaleIndexError,
)
from .router import Router, build_index

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
