"""Where exported ONNX encoders live: the user cache directory, one folder per weights
digest, each file beside a ``.sha256`` sidecar written last, so a killed or truncated
export is seen as such and never loaded."""

from __future__ import annotations

import hashlib
import logging
import os
import tempfile
from pathlib import Path

from modeltriage.errors import ConfigError

_log = logging.getLogger(__name__)

REBUILD = "rebuild it with `modeltriage build`"


def cache_root() -> Path:
    """$MODELTRIAGE_CACHE_DIR, else $XDG_CACHE_HOME/modeltriage, else ~/.cache/modeltriage:
    never inside site-packages, which may be read-only and is shared by every user."""
    explicit = os.environ.get("MODELTRIAGE_CACHE_DIR")
    if explicit:
        return Path(explicit)
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg) if xdg else Path.home() / ".cache"
    return base / "modeltriage"


def export_dir(weights_digest: str, root: Path | None = None) -> Path:
    """The folder of one set of weights' exports."""
    return (cache_root() if root is None else root) / "onnx" / weights_digest[:16]


def writable_export_dir(weights_digest: str) -> Path:
    """The cached export folder, created; a temporary one (with one warning) when the
    cache cannot be written, so a build still works without the cache."""
    target = export_dir(weights_digest)
    try:
        target.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=target, prefix=".probe-"):
            pass
        return target
    except OSError as exc:
        fallback = Path(tempfile.mkdtemp(prefix="modeltriage-onnx-"))
        _log.warning(
            "cannot write the encoder cache %s (%s); exporting into %s, which is not kept",
            target,
            exc.strerror or exc,
            fallback,
        )
        return fallback


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def sidecar(path: Path) -> Path:
    return path.with_name(path.name + ".sha256")


def seal(tmp: Path, final: Path) -> None:
    """Move a finished ``tmp`` file to ``final`` and record its hash; the sidecar goes
    last, so a file without a matching sidecar is an unfinished or damaged export."""
    digest = file_sha256(tmp)
    os.replace(tmp, final)
    side_tmp = final.with_name(f".{final.name}.sha256.{os.getpid()}.tmp")
    side_tmp.write_text(digest + "\n", encoding="ascii")
    os.replace(side_tmp, sidecar(final))


def temp_path(final: Path) -> Path:
    """A unique temporary name beside ``final`` (same filesystem, so ``os.replace`` is atomic)."""
    return final.with_name(f".{final.name}.{os.getpid()}.tmp")


def problem(path: Path) -> str | None:
    """Why ``path`` is not a finished export (missing, unsealed, truncated), else None."""
    if not path.is_file():
        return "is missing"
    try:
        expected = sidecar(path).read_text(encoding="ascii").strip()
    except (OSError, UnicodeDecodeError):
        return "has no checksum (the export did not finish)"
    if file_sha256(path) != expected:
        return "is corrupt or truncated (its checksum does not match)"
    return None


def checked_sha256(path: Path) -> str:
    """The hash of a sealed export, or a one-line ConfigError naming the file and the
    command that rebuilds it."""
    reason = problem(path)
    if reason is not None:
        raise ConfigError(f"the ONNX encoder {reason}; {REBUILD}", path)
    return sidecar(path).read_text(encoding="ascii").strip()
