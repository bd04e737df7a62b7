"""Loading intent files and router.yaml: strict schemas and file:line errors."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from modeltriage import ConfigError, load_intents
from modeltriage.core.config import Aggregation, ModelSpec, RouterConfig, Scoring

from .conftest import ROUTER_YAML, SHIPPED_INTENTS, TINY_INTENTS

GOOD = TINY_INTENTS["hours.yaml"]
PRICES = {"input_usd_per_mtok": 1.0, "output_usd_per_mtok": 1.0}


def error_of(directory: Path) -> ConfigError:
    with pytest.raises(ConfigError) as info:
        load_intents(directory)
    return info.value


def test_tiny_intents_load(tiny_dir: Path) -> None:
    loaded = load_intents(tiny_dir)
    assert [i.name for i in loaded.intents] == ["code", "hours", "refund"]
    code = loaded.intents[0]
    assert code.model == "coder"
    assert [code.exemplar_difficulty(e) for e in code.exemplars] == ["hard", "hard", "easy"]


@pytest.mark.parametrize(
    ("files", "file", "line", "fragment"),
    [
        (
            {
                "a.yaml": "name: a\ndifficulty: easy\nexemplars:\n  - hi\n",
                "b.yaml": "name: a\ndifficulty: easy\nexemplars:\n  - yo\n",
            },
            "b.yaml",
            1,
            "duplicate intent name 'a'",
        ),
        ({"a.yaml": "name: a\ndifficulty: easy\nexemplars: []\n"}, "a.yaml", 3, "exemplars"),
        ({"a.yaml": "name: a\ndifficulty: easy\n"}, "a.yaml", 1, "exemplars: Field required"),
        (
            {"a.yaml": "name: a\ndifficulty: eazy\nexemplars:\n  - hi\n"},
            "a.yaml",
            2,
            "difficulty must be one of easy, moderate, hard, got 'eazy'",
        ),
        (
            {"a.yaml": "name: a\ndifficulty: easy\nexamples:\n  - hi\n"},
            "a.yaml",
            3,
            "examples: unknown key",
        ),
        (
            {"a.yaml": "name: a\ndifficulty: easy\nmodel: gpt-9\nexemplars:\n  - hi\n"},
            "a.yaml",
            3,
            "unknown model 'gpt-9'",
        ),
        (
            {
                "a.yaml": "name: a\ndifficulty: easy\ncascade:\n  second_opinion: small-b\n"
                "  escalate_to: gpt-9\nexemplars:\n  - hi\n"
            },
            "a.yaml",
            5,
            "unknown model 'gpt-9'",
        ),
        (
            {"a.yaml": "name: a\ndifficulty: easy\ncascade:\n  second: x\nexemplars:\n  - hi\n"},
            "a.yaml",
            4,
            "second: unknown key",
        ),
        (
            {
                "a.yaml": "name: a\ndifficulty: easy\nexemplars:\n  - hi\n  - text: yo\n    difficulty: hardest\n"
            },
            "a.yaml",
            6,
            "exemplars.1.difficulty",
        ),
        (
            {"a.yaml": "name: a\ndifficulty: easy\nexemplars:\n  - hi\n  - HI\n"},
            "a.yaml",
            5,
            "exemplar 1 repeats exemplar 0",
        ),
        (
            {"a.yaml": "name: a\ndifficulty: easy\nname: b\nexemplars:\n  - hi\n"},
            "a.yaml",
            3,
            "duplicate key 'name'",
        ),
        (
            {"a.yaml": "name: a\ndifficulty: easy\nexemplars:\n  - [unclosed\n"},
            "a.yaml",
            5,
            "invalid YAML",
        ),
        ({"a.yaml": "- just\n- a list\n"}, "a.yaml", 1, "expected a mapping"),
        ({"a.yaml": "name: a b\ndifficulty: easy\nexemplars:\n  - hi\n"}, "a.yaml", 1, "name"),
        (
            {"a.yaml": "name: a\ndifficulty: easy\nexemplars:\n  - '   '\n"},
            "a.yaml",
            4,
            "exemplars.0.text",
        ),
    ],
)
def test_bad_intent_files_name_file_and_line(
    make_intents: Callable[..., Path], files: dict[str, str], file: str, line: int, fragment: str
) -> None:
    err = error_of(make_intents(files))
    assert err.path is not None and err.path.name == file
    assert err.line == line
    assert fragment in str(err)
    assert str(err).startswith(f"{err.path}:{line}: ")


# The line just after ROUTER_YAML, where the cases below append a key.
APPENDED = ROUTER_YAML.count("\n") + 1


@pytest.mark.parametrize(
    ("router_yaml", "line", "fragment"),
    [
        (ROUTER_YAML.replace("tier: mid,", "tier: medium,", 1), 5, "unknown tier 'medium'"),
        (ROUTER_YAML + "thresholds_typo: 1\n", APPENDED, "unknown key"),
        (ROUTER_YAML.replace("margin: 0.02", "margin: -1"), 9, "thresholds.margin"),
        (
            ROUTER_YAML.replace("min_similarity: 0.2", "min_similarity: high"),
            10,
            "thresholds.min_similarity",
        ),
        (ROUTER_YAML + "no_match: {tier: huge}\n", APPENDED, "unknown tier 'huge'"),
        (
            ROUTER_YAML + "fallbacks:\n  small-a: [small-b, nope]\n",
            APPENDED + 1,
            "unknown model 'nope'",
        ),
        # a margin out of range for its unit: a cosine gap (max) is 0..2 ...
        (
            ROUTER_YAML.replace("margin: 0.02", "margin: 2.5"),
            9,
            "with aggregation max a margin is a gap between two cosine similarities",
        ),
        # ... a share of the vote 0..1, for cascade_margin too
        (
            ROUTER_YAML.replace("margin: 0.02", "margin: 0.5\n  cascade_margin: 1.5").replace(
                "aggregation: max", "aggregation: vote"
            ),
            10,
            "thresholds.cascade_margin 1.5 is out of range: with aggregation vote a margin "
            "is a share of the vote (vote_share), from 0 to 1",
        ),
        (
            ROUTER_YAML.replace(
                "tiers: [small, mid, flagship]", "tiers: [small, mid, flagship, ultra]"
            ),
            1,
            "tier 'ultra' has no general",
        ),
    ],
)
def test_bad_router_config_names_file_and_line(
    make_intents: Callable[..., Path], router_yaml: str, line: int, fragment: str
) -> None:
    err = error_of(make_intents({"a.yaml": GOOD}, router_yaml))
    assert err.path is not None and err.path.name == "router.yaml"
    assert fragment in str(err)
    assert err.line == line


def test_missing_router_yaml(tmp_path: Path) -> None:
    (tmp_path / "a.yaml").write_text(GOOD)
    assert "no router.yaml" in str(error_of(tmp_path))


def test_missing_directory(tmp_path: Path) -> None:
    assert "intents directory not found" in str(error_of(tmp_path / "nope"))


def test_no_intent_files(make_intents: Callable[..., Path]) -> None:
    assert "no intent files" in str(error_of(make_intents({})))


def test_invalid_utf8(make_intents: Callable[..., Path]) -> None:
    directory = make_intents({"a.yaml": GOOD})
    (directory / "a.yaml").write_bytes(b"name: a\xff\n")
    err = error_of(directory)
    assert "not valid UTF-8" in str(err) and err.path is not None and err.path.name == "a.yaml"


def test_yaml_cannot_name_code_to_import(make_intents: Callable[..., Path]) -> None:
    evil = "name: !!python/object/apply:os.system ['true']\ndifficulty: easy\nexemplars: [hi]\n"
    err = error_of(make_intents({"a.yaml": evil}))
    assert "invalid YAML" in str(err)


def test_shipped_intents_are_a_realistic_set() -> None:
    loaded = load_intents(SHIPPED_INTENTS)
    assert len(loaded.intents) >= 20
    assert all(len(i.exemplars) >= 15 for i in loaded.intents)
    assert {i.difficulty for i in loaded.intents} == {"easy", "moderate", "hard"}
    assert any(i.model is not None for i in loaded.intents), "a specialised model is shown"
    assert len(loaded.config.tiers) >= 3


def test_code_defaults_are_the_shipped_scoring_and_margin() -> None:
    shipped = load_intents(SHIPPED_INTENTS).config
    default = RouterConfig(tiers=["t"], models=[ModelSpec(name="m", tier="t", **PRICES)])
    assert (default.thresholds.margin, default.scoring.top_k, default.scoring.aggregation) == (
        shipped.thresholds.margin,
        shipped.scoring.top_k,
        shipped.scoring.aggregation,
    )


@pytest.mark.parametrize(
    ("aggregation", "unit"),
    [("vote", "vote_share"), ("max", "cosine_gap"), ("mean_top2", "cosine_gap")],
)
def test_margin_unit_follows_the_aggregation(aggregation: Aggregation, unit: str) -> None:
    assert Scoring(aggregation=aggregation).margin_unit == unit
