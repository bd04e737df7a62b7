"""lint, diff and mine through the fake encoder (the real ones: test_review_real.py)."""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import pytest
import yaml

from modeltriage import HashingEncoder, Router, load_intents
from modeltriage.cli.main import main
from modeltriage.core.config import Aggregation
from modeltriage.core.decision import Neighbour
from modeltriage.core.encoders import Vectors, normalise
from modeltriage.core.scoring import score_intents
from modeltriage.core.vector_index import NumpyIndex
from modeltriage.errors import ConfigError
from modeltriage.learn.lint import lint_intents
from modeltriage.learn.loo import leave_one_out, neighbours_without_self

from .conftest import ROUTER_YAML, TINY_INTENTS

# --- vectorised leave-one-out = the policy's scoring ---------------------------------


@pytest.mark.parametrize("aggregation", ["vote", "max", "mean_top2"])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_vectorised_scores_match_score_intents(aggregation: Aggregation, seed: int) -> None:
    rng = np.random.default_rng(seed)
    vectors = normalise(rng.normal(size=(60, 8)).astype(np.float32))
    names = [f"intent_{i % 5}" for i in rng.permutation(60)]
    index = NumpyIndex(vectors)
    loo = leave_one_out(index, vectors, names, 7, aggregation)
    for row in range(60):
        neighbours = [
            Neighbour(intent=names[j], text=str(j), difficulty="easy", similarity=float(s))
            for s, j in zip(loo.sims[row], loo.ids[row], strict=True)
        ]
        assert row not in loo.ids[row]
        ranked = score_intents(neighbours, aggregation)
        assert loo.intents[loo.predicted[row]] == ranked[0].intent
        assert loo.best_score[row] == pytest.approx(ranked[0].score, abs=1e-5)
        if len(ranked) > 1:
            assert loo.intents[loo.runner_up[row]] == ranked[1].intent
            assert loo.margin[row] == pytest.approx(ranked[0].score - ranked[1].score, abs=1e-5)


def test_identical_vectors_still_leave_the_row_out() -> None:
    vectors = normalise(np.ones((4, 3), dtype=np.float32))
    sims, ids = neighbours_without_self(NumpyIndex(vectors), vectors, 2)
    assert sims.shape == (4, 2)
    for row in range(4):
        assert row not in ids[row]


# --- lint ----------------------------------------------------------------------------


class TableEncoder:
    """Texts to fixed directions: lint's findings follow from the geometry chosen here."""

    def __init__(self, table: dict[str, Sequence[float]], dim: int = 6) -> None:
        self.table = table
        self._dim = dim
        self.fallback = HashingEncoder(dim)

    @property
    def model_id(self) -> str:
        return "table-encoder"

    @property
    def dim(self) -> int:
        return self._dim

    def encode(self, texts: Sequence[str]) -> Vectors:
        rows = [
            np.array(self.table[t], dtype=np.float32)
            if t in self.table
            else self.fallback.encode([t])[0]
            for t in texts
        ]
        return normalise(np.stack(rows))


LINT_YAML = ROUTER_YAML + (
    "lint: {min_exemplars: 3, min_loo_accuracy: 0.5, duplicate_cosine: 0.995}\n"
)

GEOMETRY = {
    "a1": [1, 0.3, 0, 0, 0, 0],
    "a2": [1, 0, 0.3, 0, 0, 0],
    "a3": [1, -0.3, 0, 0, 0, 0],
    "a stray": [0, 1, 0, 0, 0, -0.4],  # nearer the b's than any a
    "b1": [0, 1, 0, 0, 0.1, 0],
    "b2": [0, 1, 0, 0, -0.1, 0],
    "b3": [0, 1, 0, 0, 0, 0.1],
    "c1": [0, 0, 0, 1, 0, 0],
}


def _lint_dir(make: Callable[..., Path], extra_b: str = "") -> Path:
    return make(
        {
            "a.yaml": "name: a\ndifficulty: easy\nexemplars: [a1, a2, a3, a stray]\n",
            "b.yaml": "name: b\ndifficulty: moderate\nexemplars:\n  - b1\n  - b2\n  - b3\n"
            + extra_b,
            "c.yaml": "name: c\ndifficulty: hard\nexemplars: [c1]\n",
        },
        LINT_YAML,
    )


def test_lint_finds_a_misrouted_exemplar_with_file_and_line(
    make_intents: Callable[..., Path],
) -> None:
    directory = _lint_dir(make_intents)
    report = lint_intents(directory, TableEncoder(GEOMETRY))
    assert report.index_note is not None and "built one in memory" in report.index_note
    misrouted = [f for f in report.findings if f.check == "misrouted"]
    assert [(f.intent, f.text, Path(str(f.file)).name, f.line) for f in misrouted] == [
        ("a", "a stray", "a.yaml", 3),
        ("c", "c1", "c.yaml", 3),  # alone in its intent: its nearest is always elsewhere
    ]
    assert "closer to b" in misrouted[0].message
    checks = {f.check for f in report.findings}
    assert "too_few" in checks  # c has 1 exemplar, lint.min_exemplars is 3
    assert report.loo_accuracy == pytest.approx(6 / 8)
    assert report.errors == 0 and report.exit_status() == 0
    assert report.exit_status(strict=True) == 1


def test_lint_flags_duplicates_across_intents_as_errors(
    make_intents: Callable[..., Path],
) -> None:
    directory = _lint_dir(make_intents, extra_b="  - a1 again\n")
    geometry = {**GEOMETRY, "a1 again": GEOMETRY["a1"]}
    report = lint_intents(directory, TableEncoder(geometry))
    dup = [f for f in report.findings if f.check == "duplicate_across"]
    assert len(dup) == 1 and dup[0].severity == "error"
    assert dup[0].text == "a1 again" and dup[0].line == 7
    assert "a.yaml:3" in dup[0].message
    assert report.exit_status() == 1


def test_lint_flags_difficulty_conflicts_and_no_match(make_intents: Callable[..., Path]) -> None:
    directory = make_intents(
        {
            "a.yaml": "name: a\ndifficulty: easy\nexemplars:\n  - a1\n  - text: a2\n"
            "    difficulty: hard\n  - a3\n",
            "c.yaml": "name: c\ndifficulty: hard\nexemplars: [c1, c2]\n",
        },
        LINT_YAML.replace("min_similarity: 0.2", "min_similarity: 0.5"),
    )
    geometry = {**GEOMETRY, "c2": [0, 0, 0, -1, 0.1, 0]}
    report = lint_intents(directory, TableEncoder(geometry))
    checks = [(f.check, f.text) for f in report.findings]
    assert ("difficulty_conflict", "a2") in checks
    assert ("no_match", "c1") in checks and ("no_match", "c2") in checks
    assert ("too_spread", None) in checks  # c1 and c2 point nearly opposite ways


def test_lint_thresholds_are_strict_config(make_intents: Callable[..., Path]) -> None:
    directory = make_intents(
        TINY_INTENTS, ROUTER_YAML + "lint:\n  duplicate_cosine: 0.9\n  min_exemplar: 3\n"
    )
    line = len(ROUTER_YAML.splitlines()) + 3
    with pytest.raises(ConfigError, match=rf"router.yaml:{line}: lint.min_exemplar: unknown key"):
        load_intents(directory)
    directory = make_intents(TINY_INTENTS, ROUTER_YAML + "lint: {duplicate_cosine: .nan}\n")
    with pytest.raises(ConfigError, match=r"router\.yaml"):
        load_intents(directory)


def test_lint_cli_json_strict_and_exit_status(
    make_intents: Callable[..., Path], capsys: pytest.CaptureFixture[str]
) -> None:
    directory = _lint_dir(make_intents)
    encoder = TableEncoder(GEOMETRY)
    assert main(["lint", "--intents", str(directory)], encoder=encoder) == 0
    out, err = capsys.readouterr()
    assert "a.yaml:3" in out and "misrouted" in out and "built one in memory" in err
    assert main(["lint", "--strict", "--intents", str(directory)], encoder=encoder) == 1
    capsys.readouterr()
    assert main(["lint", "--json", "--intents", str(directory)], encoder=encoder) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["errors"] == 0 and data["exemplars"] == 8
    assert any(f["check"] == "misrouted" and f["line"] == 3 for f in data["findings"])


def test_lint_uses_the_saved_index_without_an_encoder(
    tiny_dir: Path, fake_encoder: HashingEncoder, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["build", "--intents", str(tiny_dir)], encoder=fake_encoder) == 0
    report = lint_intents(tiny_dir)  # no encoder: the vectors come out of the index
    assert report.index_note is None and report.exemplars == 9


def test_lint_bad_input_is_one_line(
    tiny_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    encoder = HashingEncoder()
    assert main(["lint", "--no-build", "--intents", str(tiny_dir)], encoder=encoder) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "run: modeltriage build --intents" in err
    assert main(["lint", "--intents", str(tmp_path / "nope")], encoder=encoder) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "intents directory not found" in err


# --- diff ----------------------------------------------------------------------------


def _traffic(path: Path, texts: Sequence[str]) -> Path:
    path.write_text("".join(json.dumps({"text": t}) + "\n" for t in texts), encoding="utf-8")
    return path


TRAFFIC = [
    "what are your opening hours",
    "refund my broken order",
    "my python script throws a KeyError",
    "when do you close on sunday",
]


def test_diff_reports_changed_decisions_as_markdown(
    tiny_dir: Path,
    make_intents: Callable[..., Path],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    harder = {**TINY_INTENTS, "hours.yaml": TINY_INTENTS["hours.yaml"].replace("easy", "hard")}
    new = make_intents(harder)
    requests = _traffic(tmp_path / "t.jsonl", TRAFFIC)
    args = ["diff", str(tiny_dir), str(new), "--requests", str(requests)]
    assert main(args, encoder=HashingEncoder()) == 0
    out = capsys.readouterr().out
    assert out.startswith("### modeltriage diff")
    assert "| cost per day |" in out and "| tier flagship |" in out
    assert "#### Changed decisions" in out and "small → flagship" in out
    assert "“what are your opening hours”" in out
    assert main([*args, "--max-cost-increase", "5"], encoder=HashingEncoder()) == 1
    assert "Bound exceeded" in capsys.readouterr().out
    assert main([*args, "--json"], encoder=HashingEncoder()) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["changed"] >= 2 and data["violations"] == []
    assert data["new_report"]["daily_cost_usd"] > data["old_report"]["daily_cost_usd"]


def test_diff_accepts_two_router_yaml_files(
    tiny_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    stricter = tmp_path / "router.yaml"
    stricter.write_text(ROUTER_YAML.replace("margin: 0.02", "margin: 1.5"), encoding="utf-8")
    requests = _traffic(tmp_path / "t.jsonl", TRAFFIC)
    args = [
        "diff",
        str(tiny_dir / "router.yaml"),
        str(stricter),
        "--intents",
        str(tiny_dir),
        "--requests",
        str(requests),
        "--max-cascade-increase",
        "0",
    ]
    assert main(args, encoder=HashingEncoder()) == 1
    out = capsys.readouterr().out
    assert "low_margin" in out and "cascade rate rises" in out


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--max-cost-increase", "nan"], "must be a finite number"),
        (["--max-cascade-increase", "inf"], "must be a finite number"),
        (["--requests-per-day", "0"], "at least 1"),
    ],
)
def test_diff_hostile_flags_are_one_line(
    tiny_dir: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    extra: list[str],
    message: str,
) -> None:
    requests = _traffic(tmp_path / "t.jsonl", TRAFFIC)
    args = ["diff", str(tiny_dir), str(tiny_dir), "--requests", str(requests), *extra]
    assert main(args, encoder=HashingEncoder()) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and message in err


def test_diff_unknown_side_or_requests_is_one_line(
    tiny_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    requests = _traffic(tmp_path / "t.jsonl", ["hi \ud800 there", "x" * 10])
    args = ["diff", str(tiny_dir), str(tmp_path / "missing"), "--requests", str(requests)]
    assert main(args, encoder=HashingEncoder()) == 1
    assert "no such intents directory or router.yaml" in capsys.readouterr().err
    args = ["diff", str(tiny_dir), str(tiny_dir), "--requests", str(tmp_path / "none.jsonl")]
    assert main(args, encoder=HashingEncoder()) == 1
    assert capsys.readouterr().err.count("\n") == 1


def test_diff_says_when_the_encoders_differ(
    tiny_dir: Path, make_intents: Callable[..., Path], tmp_path: Path
) -> None:
    from modeltriage.learn.intent_diff import _encoders, load_side

    onnx = make_intents(TINY_INTENTS, ROUTER_YAML + "encoder: {backend: onnx}\n")
    old, new = load_side(tiny_dir, tiny_dir), load_side(onnx, tiny_dir)
    assert old.intent_set.config.encoder != new.intent_set.config.encoder
    first, second, note = _encoders(old, new, HashingEncoder())
    assert first is second and note is None  # an injected encoder serves both


# --- mine ----------------------------------------------------------------------------


def _logged_dir(make: Callable[..., Path], store_text: bool = True) -> Path:
    yaml_text = ROUTER_YAML.replace("min_similarity: 0.2", "min_similarity: 0.35")
    yaml_text += f"log: {{url: decisions.sqlite3, store_text: {str(store_text).lower()}}}\n"
    return make(TINY_INTENTS, yaml_text)


UNKNOWN = [
    "do you sell garden furniture",
    "do you sell garden furniture sets",
    "garden furniture for sale",
    "is there garden furniture in stock",
]


def test_mine_proposes_from_the_log_and_never_applies(
    make_intents: Callable[..., Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    directory = _logged_dir(make_intents)
    encoder = HashingEncoder()
    with Router.in_memory(load_intents(directory), encoder, exact_numpy=True, log=True) as router:
        decisions = [router.route(t) for t in [*UNKNOWN, "what are your opening hours on monday"]]
        router.feedback(decisions[-1].id, 0.1)
    assert any(d.reason == "no_match" for d in decisions)
    before = {p.name: p.read_text() for p in directory.glob("*.yaml")}
    out = tmp_path / "proposals.yaml"
    args = ["mine", "--log", "--intents", str(directory), "--out", str(out)]
    assert main(args, encoder=encoder) == 0
    printed = capsys.readouterr().out
    assert "not applied" in printed
    patch = yaml.safe_load(out.read_text())
    assert patch["proposals"], patch
    whys = {k for p in patch["proposals"] for k in p["why"]}
    assert "poor_feedback" in whys
    for p in patch["proposals"]:
        assert p["requests"] >= 1 and p["exemplars"]
        assert p["action"] in ("add_exemplars", "new_intent")
    assert {p.name: p.read_text() for p in directory.glob("*.yaml")} == before
    inside = ["mine", "--log", "--intents", str(directory), "--out", str(directory / "p.yaml")]
    assert main(inside, encoder=encoder) == 1
    assert "would load as an intent" in capsys.readouterr().err


def test_mine_empty_log_and_hash_only_log(
    make_intents: Callable[..., Path], capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    encoder = HashingEncoder()
    directory = _logged_dir(make_intents)
    args = ["mine", "--log", "--intents", str(directory), "--out", str(tmp_path / "p.yaml")]
    assert main(args, encoder=encoder) == 0
    out = capsys.readouterr().out
    assert out.count("\n") == 1 and "empty" in out
    hashed = _logged_dir(make_intents, store_text=False)
    with Router.in_memory(load_intents(hashed), encoder, exact_numpy=True, log=True) as router:
        for text in UNKNOWN:
            router.route(text)
    args = ["mine", "--log", "--intents", str(hashed), "--out", str(tmp_path / "p.yaml")]
    assert main(args, encoder=encoder) == 0
    out = capsys.readouterr().out
    assert "log.store_text: false" in out and not (tmp_path / "p.yaml").exists()


@pytest.mark.parametrize("value", ["nan", "2", "-1"])
def test_mine_refuses_a_bad_quality_floor(
    tiny_dir: Path, capsys: pytest.CaptureFixture[str], value: str
) -> None:
    args = ["mine", "--log", "--intents", str(tiny_dir), "--poor-quality", value]
    assert main(args, encoder=HashingEncoder()) == 1
    assert "--poor-quality must be from 0 to 1" in capsys.readouterr().err
