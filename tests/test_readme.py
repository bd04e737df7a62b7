"""The README's Python examples run as written on the shipped intents (real encoder, real
index), and print what their comments say."""

from __future__ import annotations

import contextlib
import io
import re
import shutil
from pathlib import Path

import pytest

from modeltriage.loading import build_index

from .conftest import REPO, SHIPPED_INTENTS

BLOCK = re.compile(r"^```python\n(.*?)^```", re.S | re.M)
PRINTED = re.compile(r"^\s*print\(.*\)\s+# (?P<expected>.+)$")


def readme_blocks() -> list[str]:
    text = (REPO / "README.md").read_text(encoding="utf-8")
    # Only self-contained examples: fragments that assume a `router` are not programs.
    return [b for b in BLOCK.findall(text) if "Router.load(" in b]


def expectation(comment: str) -> str | None:
    """What a `print(...)  # comment` promises: the comment up to any "...", without a
    trailing "(explanation)"; None for a comment that describes rather than shows."""
    if comment.startswith("the ") or comment.startswith("for "):
        return None
    comment = re.sub(r"\s+\([^()]*\)$", "", comment)
    return comment.split("...")[0]


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("readme")
    shutil.copytree(
        SHIPPED_INTENTS, root / "intents", ignore=shutil.ignore_patterns(".index", ".log*")
    )
    build_index(root / "intents")  # the default backend, as a reader's build would be
    return root


@pytest.mark.real
@pytest.mark.parametrize("number", range(len(readme_blocks())))
def test_readme_example_runs_and_prints_what_it_says(
    number: int, workdir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    block = readme_blocks()[number]
    monkeypatch.chdir(workdir)
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(compile(block, f"README.md python block {number + 1}", "exec"), {})
    printed = out.getvalue().splitlines()
    prints = [line for line in block.splitlines() if re.match(r"^\s*print\(", line)]
    assert len(printed) >= len(prints)
    # one printed line per print() in these examples, in order
    for line, actual in zip(prints, printed, strict=False):
        match = PRINTED.match(line)
        expected = None if match is None else expectation(match["expected"])
        if expected is not None:
            assert actual.startswith(expected), f"{line.strip()} printed {actual!r}"
