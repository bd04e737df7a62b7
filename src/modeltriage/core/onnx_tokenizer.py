"""The tokenizer of the ONNX backends (the ``tokenizers`` library, no torch), set up to
cut and pad texts as sentence-transformers does, and the model inputs it makes."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from modeltriage.core.encoders import normalise
from modeltriage.errors import ConfigError, MissingDependencyError

INPUTS = ("input_ids", "attention_mask", "token_type_ids")
# Texts per onnxruntime call when embedding many (a build, a micro-batch of requests). On
# one thread a text costs the same at 8 as at 32 in a build (~380 texts/s), and a
# micro-batch of up to 32 requests, sorted by length and split in 8s, pads less: 337
# against 266 texts/s. onnxruntime's arena keeps the largest activations a call needed:
# a serving worker on 15,000 exemplars at 32 clients held ~262 MB at 32 a call, 222 MB at
# 8 (docs/benchmarks.md, "Worker memory within 250 MB").
ENCODE_BATCH = 8


def max_seq_length(model_dir: Path) -> int:
    """sentence-transformers' truncation length, from the model's own settings: before
    version 6 ``sentence_bert_config.json``'s ``max_seq_length``; version 6 (which saves
    ``modeltriage finetune``'s models) writes none there and truncates at the tokenizer's
    ``model_max_length``."""
    path = model_dir / "sentence_bert_config.json"
    try:
        value = json.loads(path.read_text(encoding="utf-8")).get("max_seq_length")
        if value is None:
            path = model_dir / "tokenizer_config.json"
            value = json.loads(path.read_text(encoding="utf-8"))["model_max_length"]
            # As sentence-transformers 6 does: never past the model's positions.
            config = json.loads((model_dir / "config.json").read_text(encoding="utf-8"))
            value = min(value, config.get("max_position_embeddings", value))
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
        raise ConfigError(f"cannot read max_seq_length: {exc}", path) from None
    if not isinstance(value, int) or value < 1:
        raise ConfigError(f"max_seq_length must be a positive integer, not {value!r}", path)
    return value


def read_tokenizer(model_dir: Path) -> Any:
    """``model_dir``'s ``tokenizer.json`` as saved, or a ConfigError naming it."""
    try:
        from tokenizers import Tokenizer
    except ImportError:
        raise MissingDependencyError("tokenizers", "onnx") from None
    path = model_dir / "tokenizer.json"
    try:
        return Tokenizer.from_file(str(path))
    except Exception as exc:  # tokenizers raises a bare Exception for an unreadable file
        raise ConfigError(f"cannot read the tokenizer: {exc}", path) from None


def load_tokenizer(model_dir: Path) -> Any:
    """``model_dir``'s tokenizer, truncating where sentence-transformers does and padding
    to the longest text of a batch."""
    tokenizer = read_tokenizer(model_dir)
    # tokenizer.json pads every text to a fixed 128; pad to the batch's longest instead.
    padding = tokenizer.padding or {}
    tokenizer.no_padding()
    tokenizer.enable_padding(
        pad_id=padding.get("pad_id", 0), pad_token=padding.get("pad_token", "[PAD]")
    )
    tokenizer.enable_truncation(max_length=max_seq_length(model_dir))
    return tokenizer


def model_inputs(tokenizer: Any, texts: Sequence[str]) -> dict[str, np.ndarray]:
    """The three int64 inputs of the exported model for a batch of texts."""
    batch = tokenizer.encode_batch(list(texts))
    ids = np.array([e.ids for e in batch], dtype=np.int64)
    mask = np.array([e.attention_mask for e in batch], dtype=np.int64)
    types = np.array([e.type_ids for e in batch], dtype=np.int64)
    return dict(zip(INPUTS, (ids, mask, types), strict=True))


def embed(session: Any, tokenizer: Any, texts: Sequence[str]) -> np.ndarray:
    """One batch of texts through an onnxruntime session of the exported model: the token
    vectors averaged over the attention mask, as sentence-transformers pools, then
    L2-normalised."""
    feeds = model_inputs(tokenizer, texts)
    hidden = session.run(None, feeds)[0]
    weights = feeds["attention_mask"][:, :, None].astype(np.float32)
    pooled = (hidden * weights).sum(axis=1) / np.maximum(weights.sum(axis=1), 1e-9)
    return normalise(np.asarray(pooled, dtype=np.float32))
