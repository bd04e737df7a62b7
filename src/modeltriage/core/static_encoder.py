"""The ``static`` encoder backend: MiniLM distilled into one vector per vocabulary token
(``static_table``), a text embedded as the normalised sum of its tokens' rows. No
transformer runs per request, so it embeds in microseconds where ``onnx-int8`` takes
milliseconds, at a cost in accuracy measured in docs/benchmarks.md ("A static encoder"):
a choice for heavy traffic over many exemplars, not the default."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from modeltriage.core import onnx_files
from modeltriage.core.encoders import (
    Vectors,
    model_digest,
    normalise,
    packaged_model_dir,
    weights_id,
)
from modeltriage.core.onnx_encoder import check_mean_pooling
from modeltriage.core.onnx_export import STATIC_NAME, export_in_child
from modeltriage.core.onnx_tokenizer import max_seq_length, read_tokenizer
from modeltriage.core.static_table import load_table
from modeltriage.errors import ConfigError


class StaticEncoder:
    """The packaged all-MiniLM-L6-v2 (or a fine-tuned copy, ``model_path``) as a static
    token table. ``export=True`` distils the table first when the cache lacks it (needs
    torch for the ONNX export, at build time, in a child process); otherwise a missing or
    damaged table is a ConfigError naming the file."""

    def __init__(self, model_path: Path | str | None = None, export: bool = False) -> None:
        model_dir = packaged_model_dir() if model_path is None else Path(model_path)
        if not model_dir.is_dir():
            raise ConfigError("fine-tuned model directory not found", model_dir)
        check_mean_pooling(model_dir)
        weights = model_digest(model_dir)
        path = onnx_files.export_dir(weights) / STATIC_NAME
        if export and onnx_files.problem(path) is not None:
            path = export_in_child(model_dir, onnx_files.writable_export_dir(weights), "static")
        self._table, file_hash = load_table(path)
        self._tokenizer = _tokenizer(model_dir)
        if self._tokenizer.get_vocab_size() != self._table.shape[0]:
            raise ConfigError(
                f"the static encoder table has {self._table.shape[0]} rows for a vocabulary "
                f"of {self._tokenizer.get_vocab_size()}; {onnx_files.REBUILD}",
                path,
            )
        base = weights_id(model_path, weights)
        # The table's hash is in the id, so an index built from another table is refused.
        self._model_id = f"{base} [static {file_hash[:12]}]"
        self._path = path

    @property
    def model_id(self) -> str:
        return self._model_id

    @property
    def dim(self) -> int:
        return int(self._table.shape[1])

    @property
    def path(self) -> Path:
        """The table file this encoder reads."""
        return self._path

    def encode(self, texts: Sequence[str]) -> Vectors:
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        # No [CLS] / [SEP]: they are not words of the text, and would add the same row to
        # every vector.
        encodings = self._tokenizer.encode_batch(list(texts), add_special_tokens=False)
        for row, encoding in enumerate(encodings):
            if encoding.ids:
                out[row] = self._table[encoding.ids].sum(axis=0, dtype=np.float32)
        return normalise(out)  # an empty text stays the zero vector


def _tokenizer(model_dir: Path) -> Any:
    """``model_dir``'s tokenizer, cutting where sentence-transformers does (its window
    counts the two special tokens, which a static table does not add)."""
    tokenizer = read_tokenizer(model_dir)
    tokenizer.no_padding()
    tokenizer.enable_truncation(max_length=max(1, max_seq_length(model_dir) - 2))
    return tokenizer
