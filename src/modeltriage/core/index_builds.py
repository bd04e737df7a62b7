"""The index's ``builds/`` directory: which builds are complete, writing a new one so that a
crash at any point leaves the last complete one loadable, pruning, and the last-good record.

A build is written into ``builds/.partial-<pid>-<name>``; its ``manifest.json`` goes in last
(written to a temporary file and renamed), then the directory is renamed to
``builds/<name>``. So a build is complete exactly when its name has no leading dot and it
holds a manifest. Pruning keeps the live build (``CURRENT``), the last-good build and the
newest complete ones, and removes what a crashed writer left behind.

``last-good.json`` names the build and the validated intents (router.yaml and intent files,
as JSON) that last loaded and served; ``serve --keep-last-good`` starts from it when the
intent files are broken or the index is stale.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from modeltriage.core.intents import IntentSet
from modeltriage.errors import IndexMissingError

KEEP_BUILDS = 3
MANIFEST = "manifest.json"
LAST_GOOD = "last-good.json"
_PARTIAL = ".partial-"


def write_json(path: Path, data: Any) -> None:
    """Write ``path`` atomically and durably: a reader sees the old file or the whole new one."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with tmp.open("w", encoding="utf-8") as fh:
        json.dump(data, fh, ensure_ascii=False, indent=1)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def _fsync_dir(path: Path) -> None:
    # A rename is durable only once its directory is synced (POSIX; a no-op elsewhere).
    with contextlib.suppress(OSError):
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def is_complete(build: Path) -> bool:
    return build.is_dir() and not build.name.startswith(".") and (build / MANIFEST).is_file()


def write_build(
    index_dir: Path, name: str, write_files: Callable[[Path], None], manifest: dict[str, Any]
) -> Path:
    """Write a build (``write_files`` fills the directory; the manifest goes last), make it
    ``CURRENT`` and prune. Returns the complete build's directory."""
    builds = index_dir / "builds"
    builds.mkdir(parents=True, exist_ok=True)
    partial = Path(tempfile.mkdtemp(prefix=f"{_PARTIAL}{os.getpid()}-{name}-", dir=builds))
    final = builds / partial.name.removeprefix(f"{_PARTIAL}{os.getpid()}-")
    try:
        write_files(partial)
        write_json(partial / MANIFEST, manifest)
        _fsync_dir(partial)
        os.replace(partial, final)
        _fsync_dir(builds)
        pointer = index_dir / f".CURRENT.{os.getpid()}.tmp"
        pointer.write_text(final.name + "\n", encoding="utf-8")
        os.replace(pointer, index_dir / "CURRENT")
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        if current_build_name(index_dir) != final.name:
            shutil.rmtree(final, ignore_errors=True)
        raise
    _fsync_dir(index_dir)
    prune_builds(index_dir)
    return final


def current_build_name(index_dir: Path) -> str | None:
    try:
        return (index_dir / "CURRENT").read_text(encoding="utf-8").strip() or None
    except OSError:
        return None


def _writer_alive(partial: Path) -> bool:
    """Whether the process that is writing ``partial`` still runs (a crash leaves it)."""
    pid_text = partial.name.removeprefix(_PARTIAL).split("-", 1)[0]
    if not pid_text.isdigit() or int(pid_text) == os.getpid():
        return False  # this process writes one build at a time, under write_build
    try:
        os.kill(int(pid_text), 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True  # alive, owned by another user
    return True


def prune_builds(index_dir: Path, keep: int = KEEP_BUILDS) -> list[str]:
    """Remove half-written builds and all but the newest ``keep`` complete ones, never the
    ``CURRENT`` or the last-good build. Returns the names removed."""
    builds = index_dir / "builds"
    if not builds.is_dir():
        return []
    protected = {current_build_name(index_dir), last_good_build(index_dir)}
    removed: list[str] = []
    complete: list[Path] = []
    for path in builds.iterdir():
        if path.name in protected or not path.is_dir():
            continue
        if is_complete(path):
            complete.append(path)
        elif path.name.startswith(_PARTIAL) and _writer_alive(path):
            continue
        else:
            removed.append(path.name)
    live = sum(1 for name in protected if name is not None and is_complete(builds / name))
    complete.sort(key=lambda p: p.name)
    removed += [p.name for p in complete[: max(0, len(complete) - max(0, keep - live))]]
    for name in removed:
        shutil.rmtree(builds / name, ignore_errors=True)
    return removed


def save_last_good(index_dir: Path, build: str, intent_set: IntentSet) -> None:
    """Record that ``build`` served ``intent_set``: what ``--keep-last-good`` starts from."""
    index_dir.mkdir(parents=True, exist_ok=True)
    snapshot = json.loads(intent_set.model_copy(update={"source": None}).model_dump_json())
    write_json(index_dir / LAST_GOOD, {"build": build, "intent_set": snapshot})


def last_good_build(index_dir: Path) -> str | None:
    with contextlib.suppress(OSError, ValueError, TypeError, KeyError):
        name = json.loads((index_dir / LAST_GOOD).read_text(encoding="utf-8"))["build"]
        return name if isinstance(name, str) else None
    return None


def read_last_good(index_dir: Path, intents_dir: Path) -> tuple[Path, IntentSet, float]:
    """The last-good build's directory, its intents (``source``: ``intents_dir``) and when
    it was recorded (a Unix time). Raises IndexMissingError when there is none."""
    record = index_dir / LAST_GOOD
    try:
        data = json.loads(record.read_text(encoding="utf-8"))
        intent_set = IntentSet.model_validate(data["intent_set"])
        build = index_dir / "builds" / str(data["build"])
        recorded = record.stat().st_mtime
    except (OSError, ValueError, TypeError, KeyError, ValidationError) as exc:
        raise IndexMissingError(f"no last good index in {index_dir} ({exc})") from None
    if not is_complete(build):
        raise IndexMissingError(f"the last good build {build} is gone or incomplete")
    return build, intent_set.model_copy(update={"source": intents_dir}), recorded


def stamp() -> str:
    return time.strftime("%Y%m%dT%H%M%S", time.gmtime())
