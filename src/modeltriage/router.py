"""``Router``: wires the encoder, the index and the policy together. No logic of its own."""

from __future__ import annotations

import time
import uuid
from collections.abc import Sequence
from pathlib import Path

from .config import IntentSet, RouterConfig, load_intents
from .decision import Decision, Neighbour
from .encoders import Encoder, SentenceTransformerEncoder
from .errors import IndexStateError, InputError
from .index import (
    FaissIndex,
    LoadedIndex,
    Manifest,
    NumpyIndex,
    build_in_memory,
    exemplar_rows,
    load_index,
    save_index,
)
from .policy import decide, estimate_tokens


def check_text(text: object, max_bytes: int) -> str:
    """Reject what cannot be routed, with a message fit for the caller."""
    if not isinstance(text, str):
        raise InputError(f"text must be a string, got {type(text).__name__}")
    try:
        size = len(text.encode("utf-8"))
    except UnicodeEncodeError:
        raise InputError("text is not valid Unicode (it contains lone surrogates)") from None
    if not text.strip():
        raise InputError("text is empty")
    if size > max_bytes:
        raise InputError(
            f"text is {size} bytes, over the limit of {max_bytes} (limits.max_text_bytes)",
            too_large=True,
        )
    return text


def build_index(intents_dir: Path | str = "intents", encoder: Encoder | None = None) -> Manifest:
    """Embed every exemplar under ``intents_dir`` and save the index beside the intents."""
    intent_set = load_intents(intents_dir)
    encoder = SentenceTransformerEncoder() if encoder is None else encoder
    loaded = build_in_memory(exemplar_rows(intent_set.intents), encoder, FaissIndex)
    save_index(loaded, intent_set.index_path)
    return loaded.manifest


class Router:
    """Decides which model should answer a request. Never calls a model itself."""

    def __init__(self, intent_set: IntentSet, encoder: Encoder, index: LoadedIndex) -> None:
        self._intent_set = intent_set
        self._intents = {intent.name: intent for intent in intent_set.intents}
        self._encoder = encoder
        self._index = index

    @classmethod
    def load(
        cls,
        intents_dir: Path | str = "intents",
        *,
        encoder: Encoder | None = None,
        build_if_needed: bool = False,
    ) -> Router:
        """Load intents and their saved index.

        Raises ``IndexMissingError``/``StaleIndexError`` when the index does not match
        the intent files, unless ``build_if_needed`` is set, in which case it rebuilds.
        """
        intent_set = load_intents(intents_dir)
        encoder = SentenceTransformerEncoder() if encoder is None else encoder
        rows = exemplar_rows(intent_set.intents)
        try:
            index = load_index(intent_set.index_path, rows, encoder, Path(intents_dir))
        except IndexStateError:
            if not build_if_needed:
                raise
            index = build_in_memory(rows, encoder, FaissIndex)
            save_index(index, intent_set.index_path)
        return cls(intent_set, encoder, index)

    @classmethod
    def in_memory(
        cls, intent_set: IntentSet, encoder: Encoder, *, exact_numpy: bool = False
    ) -> Router:
        """Build the index in memory without touching disk (evaluation, tests)."""
        factory = NumpyIndex if exact_numpy else FaissIndex
        rows = exemplar_rows(intent_set.intents)
        return cls(intent_set, encoder, build_in_memory(rows, encoder, factory))

    @property
    def config(self) -> RouterConfig:
        return self._intent_set.config

    @property
    def intent_set(self) -> IntentSet:
        return self._intent_set

    @property
    def manifest(self) -> Manifest:
        return self._index.manifest

    @property
    def encoder(self) -> Encoder:
        return self._encoder

    def route(self, text: str, *, explain: bool = False) -> Decision:
        """Decide which model should answer ``text``."""
        return self.route_batch([text], explain=explain)[0]

    def route_batch(self, texts: Sequence[str], *, explain: bool = False) -> list[Decision]:
        """Route several texts with one encoder call; ``latency_ms`` is the batch's share."""
        limits = self.config.limits
        if len(texts) > limits.max_batch:
            raise InputError(
                f"batch of {len(texts)} texts is over the limit of {limits.max_batch} "
                "(limits.max_batch)",
                too_large=True,
            )
        for position, text in enumerate(texts):
            try:
                check_text(text, limits.max_text_bytes)
            except InputError as exc:
                where = f"texts[{position}]: " if len(texts) > 1 else ""
                raise InputError(f"{where}{exc}", too_large=exc.too_large) from None
        if not texts:
            return []
        started = time.perf_counter()
        vectors = self._encoder.encode(list(texts))
        sims, ids = self._index.index.search(vectors, self.config.scoring.top_k)
        rows = self._index.rows
        verdicts = []
        all_neighbours = []
        for text, row_sims, row_ids in zip(texts, sims, ids, strict=True):
            neighbours = [
                Neighbour(
                    intent=rows[i].intent,
                    text=rows[i].text,
                    difficulty=rows[i].difficulty,
                    similarity=round(float(s), 6),
                )
                for s, i in zip(row_sims, row_ids, strict=True)
                if i >= 0
            ]
            tokens = estimate_tokens(text, self.config.cost.chars_per_token)
            verdicts.append(decide(neighbours, self.config, self._intents, tokens))
            all_neighbours.append(neighbours)
        latency_ms = (time.perf_counter() - started) * 1000 / len(texts)
        return [
            Decision(
                **verdict.model_dump(),
                id=uuid.uuid4().hex,
                index_version=self._index.manifest.version,
                latency_ms=round(latency_ms, 3),
                neighbours=neighbours if explain else [],
            )
            for verdict, neighbours in zip(verdicts, all_neighbours, strict=True)
        ]
