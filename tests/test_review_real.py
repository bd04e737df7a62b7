"""lint, diff and mine through the real encoder and a real FAISS index."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import yaml

from modeltriage import Router, SentenceTransformerEncoder, load_intents
from modeltriage.cli.main import main
from modeltriage.learn.lint import lint_intents

REPO = Path(__file__).resolve().parent.parent
TRAFFIC = REPO / "examples" / "traffic" / "support_day.jsonl"

pytestmark = pytest.mark.real


def test_shipped_intents_pass_lint(
    shipped_router: Router, shipped_copy: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The shipped intents clear lint.min_loo_accuracy (0.9) with the default encoder,
    from the index on disk (no encoder is loaded for it)."""
    report = lint_intents(shipped_copy)
    assert report.index_note is None
    assert report.loo_accuracy >= 0.9, report.loo_accuracy
    assert report.errors == 0
    assert main(["lint", "--intents", str(shipped_copy)]) == 0
    assert "leave-one-out accuracy" in capsys.readouterr().out


def test_diff_of_an_intent_change_on_the_sample_traffic(
    shipped_router: Router,
    shipped_copy: Path,
    real_encoder: SentenceTransformerEncoder,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    changed = tmp_path / "intents"
    shutil.copytree(shipped_copy, changed, ignore=shutil.ignore_patterns(".index", ".log"))
    path = changed / "store_hours.yaml"
    data = yaml.safe_load(path.read_text())
    data["difficulty"] = "hard"
    path.write_text(yaml.safe_dump(data))
    args = ["diff", str(shipped_copy), str(changed), "--requests", str(TRAFFIC), "--json"]
    assert main([*args, "--max-cost-increase", "1"], encoder=real_encoder) == 1
    result = json.loads(capsys.readouterr().out)
    assert result["changed"] > 0
    assert all(c["new"]["tier"] == "flagship" for c in result["changes"])
    assert result["violations"] and "cost per day rises" in result["violations"][0]


def test_mine_a_real_log(
    shipped_copy: Path,
    real_encoder: SentenceTransformerEncoder,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    url = str(tmp_path / "log.sqlite3")
    texts = [
        "do you sell garden furniture",
        "I need a new patio set for my garden",
        "garden furniture delivery",
        "what is the meaning of life",
    ]
    intent_set = load_intents(shipped_copy)
    with Router.in_memory(intent_set, real_encoder, log=url) as router:
        for text in texts:
            router.route(text)
    out = tmp_path / "proposals.yaml"
    args = ["mine", "--log", "--url", url, "--intents", str(shipped_copy), "--out", str(out)]
    assert main(args, encoder=real_encoder) == 0
    printed = capsys.readouterr().out
    patch = yaml.safe_load(out.read_text())
    assert patch["proposals"], printed
    mined = [t for p in patch["proposals"] for t in p["exemplars"]]
    assert set(mined) <= set(texts)
