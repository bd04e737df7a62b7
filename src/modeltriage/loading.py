"""What a router is assembled from, one function each: the encoder router.yaml names, the
index (loaded, or built and saved when asked), and the decision logger. ``Router.load``
and ``Router.in_memory`` wire them together; ``build`` and the learning commands call
them directly."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from modeltriage.core.encoders import Encoder, SentenceTransformerEncoder
from modeltriage.core.index import (
    LoadedIndex,
    Manifest,
    build_from_config,
    exemplar_rows,
    load_index,
    save_index,
)
from modeltriage.core.intents import IntentSet, load_intents
from modeltriage.core.vector_cache import CachedExemplarEncoder
from modeltriage.core.vector_index import FaissIndex
from modeltriage.errors import IndexStateError
from modeltriage.log.open import open_store
from modeltriage.log.store import LogStore
from modeltriage.log.urls import configured_log_url
from modeltriage.log.writer import DecisionLogger


def encoder_for(intent_set: IntentSet, export: bool = False) -> Encoder:
    """The encoder router.yaml asks for: its ``backend`` running a fine-tuned model
    (``encoder.path``, relative to the intents directory) or the packaged all-MiniLM-L6-v2.
    ``export``: an ONNX backend exports the model when its cache lacks it (build time);
    otherwise a missing export is an error, so serving never needs torch."""
    settings = intent_set.config.encoder
    base = Path(".") if intent_set.source is None else intent_set.source
    model_path = None if settings.path is None else base / settings.path
    if settings.backend == "torch":
        return SentenceTransformerEncoder(model_path=model_path)
    if settings.backend == "static":
        from modeltriage.core.static_encoder import StaticEncoder

        return StaticEncoder(model_path, export=export)
    from modeltriage.core.onnx_encoder import OnnxEncoder

    return OnnxEncoder(settings.backend, model_path, threads=settings.threads, export=export)


def build_index(intents_dir: Path | str = "intents", encoder: Encoder | None = None) -> Manifest:
    """Embed every exemplar under ``intents_dir`` and save the index beside the intents."""
    intent_set = load_intents(intents_dir)
    encoder = encoder_for(intent_set, export=True) if encoder is None else encoder
    return _build_and_save(intent_set, encoder).manifest


def _build_and_save(intent_set: IntentSet, encoder: Encoder) -> LoadedIndex:
    """Build ``intent_set``'s index from router.yaml's settings and save it beside the
    intents; exemplars embedded by the last build come from the vector cache there."""
    cached = CachedExemplarEncoder(encoder, intent_set.index_path)
    loaded = build_from_config(
        exemplar_rows(intent_set.intents), cached, FaissIndex, intent_set.config
    )
    return replace(loaded, build=save_index(loaded, intent_set.index_path).name)


def open_logger(intent_set: IntentSet, log: bool | str | LogStore = True) -> DecisionLogger | None:
    """The decision logger the config (or ``log``) asks for, or None when logging is off.

    ``log=True``: ``$MODELTRIAGE_LOG_URL`` if set, else ``log.url`` from router.yaml
    (a relative SQLite path is relative to the intents directory). A string is a URL; a
    store is used as is.
    """
    settings = intent_set.config.log
    base = Path(".") if intent_set.source is None else intent_set.source
    if log is False:
        return None
    if isinstance(log, str) or log is True:
        url = configured_log_url(settings, base, log if isinstance(log, str) else None)
        if url is None:
            return None
        store = open_store(url)
    else:
        store = log
    return DecisionLogger(
        store,
        queue_size=settings.queue_size,
        store_text=settings.store_text,
        durability=settings.durability,
        flush_interval_s=settings.flush_interval_s,
        ack_timeout_s=settings.ack_timeout_s,
        spool_path=base / ".log-spool.jsonl",
    )


def index_for(intent_set: IntentSet, encoder: Encoder, *, build_if_needed: bool) -> LoadedIndex:
    """The saved index of ``intent_set``; raises ``IndexMissingError``/``StaleIndexError``
    when it does not match the intent files, unless ``build_if_needed``: then it builds
    and saves a new one."""
    rows = exemplar_rows(intent_set.intents)
    base = Path(".") if intent_set.source is None else intent_set.source
    scoring = intent_set.config.scoring
    settings = intent_set.config.index
    adapter, oos = intent_set.config.adapter, intent_set.config.out_of_scope
    try:
        return load_index(
            intent_set.index_path, rows, encoder, base, scoring, settings, adapter, oos
        )
    except IndexStateError:
        if not build_if_needed:
            raise
    return _build_and_save(intent_set, encoder)
