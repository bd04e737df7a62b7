"""Exemplar vectors kept on disk between builds, by (encoder id, text): a rebuild after one
intent file is edited embeds only that file's new or changed exemplars.

One file per encoder beside the index (``<index_dir>/vectors/<hash of the encoder id>.npz``)
holding the texts and vectors of the last build, so it never grows past one build's
exemplars. A cache that cannot be read is ignored; one that cannot be written costs one
warning, and the build goes on without it.
"""

from __future__ import annotations

import hashlib
import logging
import os
import tempfile
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from modeltriage.core.encoders import Encoder, Vectors

_log = logging.getLogger(__name__)


def cache_file(index_dir: Path, model_id: str) -> Path:
    name = hashlib.sha256(model_id.encode("utf-8")).hexdigest()[:16]
    return index_dir / "vectors" / f"{name}.npz"


class CachedExemplarEncoder:
    """An ``Encoder`` for building: vectors of texts embedded by the last build come from
    the cache file, the others from ``encoder``; every call rewrites the file with the
    texts of that call. ``embedded`` counts the texts really encoded."""

    def __init__(self, encoder: Encoder, index_dir: Path) -> None:
        self._encoder = encoder
        self._path = cache_file(index_dir, encoder.model_id)
        self.embedded = 0

    @property
    def model_id(self) -> str:
        return self._encoder.model_id

    @property
    def dim(self) -> int:
        return self._encoder.dim

    def encode(self, texts: Sequence[str]) -> Vectors:
        known = self._read()
        missing = [t for t in dict.fromkeys(texts) if t not in known]
        if missing:
            fresh = self._encoder.encode(missing)
            self.embedded += len(missing)
            known.update(zip(missing, fresh, strict=True))
        out = np.empty((len(texts), self.dim), dtype=np.float32)
        for row, text in enumerate(texts):
            out[row] = known[text]
        if missing or len(known) != len(set(texts)):
            self._write(list(dict.fromkeys(texts)), out, texts)
        return out

    def _read(self) -> dict[str, Vectors]:
        try:
            with np.load(self._path, allow_pickle=False) as data:
                texts, vectors, model = data["texts"], data["vectors"], str(data["model_id"])
        except FileNotFoundError:
            return {}
        except Exception as exc:  # a damaged cache is only a slower build
            _log.warning("ignoring the exemplar vector cache %s (%s)", self._path, exc)
            return {}
        if model != self.model_id or vectors.shape != (len(texts), self.dim):
            return {}
        return {str(t): v for t, v in zip(texts, vectors.astype(np.float32), strict=True)}

    def _write(self, unique: list[str], out: Vectors, texts: Sequence[str]) -> None:
        first = {text: row for row, text in reversed(list(enumerate(texts)))}
        vectors = out[[first[t] for t in unique]] if unique else out[:0]
        tmp: str | None = None
        try:
            self._path.parent.mkdir(parents=True, exist_ok=True)
            handle, tmp = tempfile.mkstemp(prefix=".vectors-", suffix=".npz", dir=self._path.parent)
            with os.fdopen(handle, "wb") as stream:
                np.savez(
                    stream,
                    texts=np.array(unique, dtype=str),
                    vectors=vectors,
                    model_id=np.array(self.model_id),
                )
            os.replace(tmp, self._path)
            tmp = None
        except (OSError, UnicodeEncodeError) as exc:
            _log.warning(
                "cannot write the exemplar vector cache %s (%s); the next build embeds "
                "every exemplar again",
                self._path,
                getattr(exc, "strerror", None) or exc,
            )
        finally:
            if tmp is not None:
                Path(tmp).unlink(missing_ok=True)
