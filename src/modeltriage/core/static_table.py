"""The ``static`` backend's table, distilled from the exported fp32 MiniLM at build time.

Each vocabulary token is run through the transformer alone (``[CLS] token [SEP]``) and
its mean-pooled output becomes the token's row (Model2Vec's idea, Tulkens & van Dongen
2024). Rows are weighted by ``log(1 + token id)``: BERT's vocabulary lists special tokens
and characters first and words roughly by frequency after them, so the id is a cheap
stand-in for the frequency rank that SIF-style weighting wants, and it gained 0.4-0.9
points on CLINC150 over plain means (docs/benchmarks.md, "A static encoder"). Stored as
float16 ``.npy`` (23 MB for MiniLM's 30,522 tokens), memory-mapped when served, so workers
share one copy. A request is then a tokenisation and a sum of rows: microseconds, no
onnxruntime, no torch.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from modeltriage.core import onnx_files
from modeltriage.core.onnx_tokenizer import read_tokenizer
from modeltriage.errors import ConfigError, MissingDependencyError

_DISTIL_BATCH = 512  # tokens per onnxruntime call: three positions each, so cheap


def distil_table(fp32: Path, model_dir: Path, target: Path, threads: int) -> None:
    """Write the weighted token table of the transformer ``fp32`` (an exported ONNX file)
    and ``model_dir``'s tokenizer to ``target``, sealed like an export."""
    try:
        import onnxruntime as ort
    except ImportError:
        raise MissingDependencyError("onnxruntime", "onnx") from None
    tokenizer = read_tokenizer(model_dir)
    tokenizer.no_padding()
    specials = tokenizer.encode("").ids  # [CLS], [SEP] for BERT: what wraps every text
    if len(specials) != 2:
        raise ValueError(f"expected a tokenizer that wraps a text in 2 tokens, got {specials[:8]}")
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.log_severity_level = 3
    session = ort.InferenceSession(str(fp32), options, providers=["CPUExecutionProvider"])
    names = {i.name for i in session.get_inputs()}
    size = tokenizer.get_vocab_size()
    table: np.ndarray[Any, np.dtype[np.float32]] | None = None
    for start in range(0, size, _DISTIL_BATCH):
        ids = np.arange(start, min(size, start + _DISTIL_BATCH), dtype=np.int64)
        tokens = np.stack([np.full_like(ids, specials[0]), ids, np.full_like(ids, specials[1])], 1)
        feeds = {
            "input_ids": tokens,
            "attention_mask": np.ones_like(tokens),
            "token_type_ids": np.zeros_like(tokens),
        }
        hidden = session.run(None, {k: v for k, v in feeds.items() if k in names})[0]
        if table is None:
            table = np.zeros((size, hidden.shape[-1]), dtype=np.float32)
        table[ids] = hidden.mean(axis=1)
    if table is None:
        raise ValueError("the tokenizer has an empty vocabulary")
    table *= np.log1p(np.arange(size, dtype=np.float32))[:, None]
    tmp = onnx_files.temp_path(target)
    try:
        with tmp.open("wb") as handle:
            np.save(handle, table.astype(np.float16))
        onnx_files.seal(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)


def load_table(path: Path) -> tuple[np.ndarray[Any, np.dtype[np.float16]], str]:
    """The sealed table at ``path``, memory-mapped, and its SHA-256; a one-line
    ConfigError naming the file and the command that rebuilds it when it is missing,
    damaged or not a table."""
    digest = onnx_files.checked_sha256(path)
    try:
        table: np.ndarray[Any, np.dtype[np.float16]] = np.load(
            path, mmap_mode="r", allow_pickle=False
        )
    except (OSError, ValueError) as exc:
        raise ConfigError(
            f"the static encoder table cannot be read ({exc}); {onnx_files.REBUILD}", path
        ) from None
    if table.ndim != 2 or table.dtype != np.float16 or 0 in table.shape:
        raise ConfigError(
            f"the static encoder table has shape {table.shape} and dtype {table.dtype}, "
            f"not (tokens, dim) float16; {onnx_files.REBUILD}",
            path,
        )
    return table, digest
