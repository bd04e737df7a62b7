"""The ONNX encoder backends (``onnx``, ``onnx-int8``): the exported MiniLM run with
onnxruntime and the ``tokenizers`` library, no torch. Vectors match the torch encoder's:
same truncation, mean pooling over the attention mask, then L2 normalisation."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np

from modeltriage.core import onnx_files
from modeltriage.core.cpu import available_cores
from modeltriage.core.encoders import (
    Vectors,
    model_digest,
    packaged_model_dir,
    weights_id,
)
from modeltriage.core.onnx_export import FP32_NAME, INT8_NAME, export_in_child
from modeltriage.core.onnx_tokenizer import ENCODE_BATCH, embed, load_tokenizer
from modeltriage.errors import ConfigError, MissingDependencyError

OnnxBackend = Literal["onnx", "onnx-int8"]

# Measured on the 2-core machine (docs/benchmarks.md): one thread is fastest for one
# short query, and leaves the other core to the web server.
DEFAULT_THREADS = 1
# From this many texts in one call (a build's exemplars; requests come in micro-batches
# of at most 64), and when ``threads`` is not set, a second session with a thread per
# available core embeds them, then is let go: 2,000 texts 15-36% faster on the quiet
# 2-core machine, the same with the other core busy, the same vectors bit for bit
# (docs/benchmarks.md, "A build embeds on every core").
BULK_TEXTS = 1024


def check_mean_pooling(model_dir: Path) -> None:
    """The ONNX backends pool by mean only; another pooling would silently change vectors."""
    path = model_dir / "1_Pooling" / "config.json"
    try:
        modes = pooling_modes(json.loads(path.read_text(encoding="utf-8")))
    except (OSError, ValueError, AttributeError, TypeError):
        modes = []
    if modes != ["mean"]:
        raise ConfigError("the ONNX encoder supports mean pooling only; use backend: torch", path)


def pooling_modes(config: dict[str, Any]) -> list[str]:
    """The pooling modes of a sentence-transformers ``1_Pooling/config.json``. Version 6
    writes ``pooling_mode`` (a name or a list; what ``modeltriage finetune`` saves now),
    earlier ones a boolean per mode (``pooling_mode_mean_tokens``: the packaged model)."""
    mode = config.get("pooling_mode")
    if mode is not None:
        return [mode] if isinstance(mode, str) else [str(m) for m in mode]
    return [
        key.removeprefix("pooling_mode_").removesuffix("_tokens").removesuffix("_token")
        for key, on in config.items()
        if key.startswith("pooling_mode_") and on is True
    ]


class OnnxEncoder:
    """The packaged all-MiniLM-L6-v2 (or a fine-tuned copy, ``model_path``) as ONNX.

    ``export=True`` exports the model first when the cache lacks it (needs torch, at
    build time; in a child process, so this one never imports torch); otherwise a
    missing or damaged export is a ConfigError naming the file.
    """

    def __init__(
        self,
        backend: OnnxBackend = "onnx-int8",
        model_path: Path | str | None = None,
        threads: int | None = None,
        export: bool = False,
    ) -> None:
        model_dir = packaged_model_dir() if model_path is None else Path(model_path)
        if not model_dir.is_dir():
            raise ConfigError("fine-tuned model directory not found", model_dir)
        check_mean_pooling(model_dir)
        weights = model_digest(model_dir)
        name = INT8_NAME if backend == "onnx-int8" else FP32_NAME
        path = onnx_files.export_dir(weights) / name
        if export and onnx_files.problem(path) is not None:
            folder = onnx_files.writable_export_dir(weights)
            path = export_in_child(model_dir, folder, "int8" if backend == "onnx-int8" else "fp32")
        file_hash = onnx_files.checked_sha256(path)
        base = weights_id(model_path, weights)
        # The file's hash is in the id, so an index built by another export is refused.
        self._model_id = f"{base} [{backend} {file_hash[:12]}]"
        self._path = path
        self._threads = threads
        self._session = _session(path, DEFAULT_THREADS if threads is None else threads)
        self._tokenizer = load_tokenizer(model_dir)
        self._dim = int(self._session.get_outputs()[0].shape[-1])

    @property
    def model_id(self) -> str:
        return self._model_id

    @property
    def dim(self) -> int:
        return self._dim

    @property
    def path(self) -> Path:
        """The ONNX file this encoder runs."""
        return self._path

    def encode(self, texts: Sequence[str]) -> Vectors:
        if len(texts) <= ENCODE_BATCH:
            return self._encode_batch(self._session, texts)
        session = self._session
        if len(texts) >= BULK_TEXTS and self._threads is None and available_cores() > 1:
            session = _session(self._path, available_cores())
        # Batches of texts of similar length, as sentence-transformers does: a batch pads
        # to its own longest text, not to the longest of a whole build.
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
        vectors = np.empty((len(texts), self._dim), dtype=np.float32)
        for start in range(0, len(order), ENCODE_BATCH):
            chosen = order[start : start + ENCODE_BATCH]
            vectors[chosen] = self._encode_batch(session, [texts[i] for i in chosen])
        return vectors

    def _encode_batch(self, session: Any, texts: Sequence[str]) -> Vectors:
        if len(texts) == 0:
            return np.zeros((0, self._dim), dtype=np.float32)
        return embed(session, self._tokenizer, texts)


def _session(path: Path, threads: int) -> Any:
    try:
        import onnxruntime as ort
    except ImportError:
        raise MissingDependencyError("onnxruntime", "onnx") from None
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.log_severity_level = 3
    # Idle pool threads would otherwise spin after each call, taking a core from the
    # web server and from other processes between requests.
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    try:
        return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    except Exception as exc:  # onnxruntime raises its own untyped errors for a bad file
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ConfigError(
            f"the ONNX encoder cannot be loaded ({first[:200]}); {onnx_files.REBUILD}", path
        ) from None
