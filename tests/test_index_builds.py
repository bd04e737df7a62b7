"""The builds directory: a crash mid-save never costs the last complete build, and what a
crashed writer left behind is removed (issue 12, defect 7). Fake encoder, real FAISS."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

from modeltriage import HashingEncoder, Router, build_index, load_intents
from modeltriage.core.index import exemplar_rows, load_index
from modeltriage.core.index_builds import (
    current_build_name,
    is_complete,
    last_good_build,
    prune_builds,
    save_last_good,
)

# Saves a build through a FAISS index whose save() dies like kill -9 once the vectors are
# written ("index"), or as soon as they are being written ("early").
CRASHING_SAVE = textwrap.dedent(
    """
    import os, sys
    from pathlib import Path
    from modeltriage import HashingEncoder, load_intents
    from modeltriage.core.index import build_in_memory, exemplar_rows, save_index
    from modeltriage.core.vector_index import FaissIndex

    where, intents = sys.argv[1], Path(sys.argv[2])

    class CrashingFaiss(FaissIndex):
        def save(self, path):
            if where == "early":
                os._exit(9)
            super().save(path)
            os._exit(9)

    intent_set = load_intents(intents)
    loaded = build_in_memory(exemplar_rows(intent_set.intents), HashingEncoder(), FaissIndex)
    crashing = type(loaded)(CrashingFaiss(loaded.index._index), loaded.rows, loaded.manifest)
    save_index(crashing, intent_set.index_path)
    """
)


def crash_during_save(intents: Path, where: str) -> None:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    done = subprocess.run(
        [sys.executable, "-c", CRASHING_SAVE, where, str(intents)], env=env, check=False
    )
    assert done.returncode == 9


def test_four_crashes_mid_save_keep_the_last_complete_build(
    tiny_dir: Path, fake_encoder: HashingEncoder
) -> None:
    build_index(tiny_dir, encoder=fake_encoder)
    index_dir = tiny_dir / ".index"
    complete = current_build_name(index_dir)
    for where in ("index", "early", "index", "early"):
        crash_during_save(tiny_dir, where)
    builds = index_dir / "builds"
    half_written = [p.name for p in builds.iterdir() if not is_complete(p)]
    assert len(half_written) == 4  # left by the dead writers, never made CURRENT
    assert current_build_name(index_dir) == complete
    rows = exemplar_rows(load_intents(tiny_dir).intents)
    assert load_index(index_dir, rows, fake_encoder).build == complete
    # The next save removes what the dead writers left and keeps the complete build.
    build_index(tiny_dir, encoder=fake_encoder)
    names = sorted(p.name for p in builds.iterdir())
    assert complete in names and len(names) == 2
    assert all(is_complete(builds / name) for name in names)
    assert Router.load(tiny_dir, encoder=fake_encoder).route("refund please").intent == "refund"


def test_pruning_never_removes_current_or_last_good(
    tiny_dir: Path, fake_encoder: HashingEncoder
) -> None:
    build_index(tiny_dir, encoder=fake_encoder)
    index_dir = tiny_dir / ".index"
    first = current_build_name(index_dir)
    assert first is not None
    save_last_good(index_dir, first, load_intents(tiny_dir))
    for _ in range(5):
        build_index(tiny_dir, encoder=fake_encoder)
    names = {p.name for p in (index_dir / "builds").iterdir()}
    assert first in names and current_build_name(index_dir) in names
    assert len(names) == 3 and last_good_build(index_dir) == first


def test_pruning_leaves_a_live_writers_build_alone(tiny_dir: Path) -> None:
    builds = tiny_dir / ".index" / "builds"
    # pid 1 is always alive: its build may still be being written.
    live = builds / ".partial-1-20260101T000000-abc-x"
    dead = builds / "20260101T000000-abc-y"  # an old-style build that never got a manifest
    live.mkdir(parents=True)
    dead.mkdir()
    assert prune_builds(tiny_dir / ".index") == [dead.name]
    assert live.is_dir()
