"""Labelled outcomes: learning difficulty from evidence, scoring choices by real results.

The rows here are synthetic (made up for these tests), in the RouterBench-style format
of ../shared/data/routerbench: {"id", "text", "task", "outcomes": {model: {quality, cost_usd}}}.
"""

from __future__ import annotations

import json
import math
import random
from pathlib import Path

import pytest

from modeltriage import ConfigError, HashingEncoder, InputError, Router, load_intents
from modeltriage.cli.main import main
from modeltriage.learn.outcome_data import Outcome, OutcomeRow, read_outcomes_jsonl
from modeltriage.learn.outcome_eval import (
    OutcomesReport,
    apgr,
    calls_for_gap,
    evaluate_outcomes,
    oracle,
)
from modeltriage.learn.outcome_files import (
    evaluate_outcome_files,
    tiers_with_flagship,
    train_test_rows,
)
from modeltriage.learn.outcome_intents import (
    learn_intents,
    learned_config,
    learned_difficulty,
    parse_tiers,
)

TIERS = [("small", "tiny"), ("mid", "medium"), ("flagship", "huge")]


def row(n: int, task: str, text: str, tiny: float, medium: float, huge: float = 1.0) -> OutcomeRow:
    return OutcomeRow(
        id=str(n),
        text=text,
        task=task,
        outcomes={
            "tiny": Outcome(tiny, 0.001),
            "medium": Outcome(medium, 0.01),
            "huge": Outcome(huge, 0.1),
        },
    )


def synthetic(n: int = 60) -> list[OutcomeRow]:
    """Arithmetic questions are easy for the tiny model, proofs need the huge one."""
    rows = []
    for i in range(n):
        if i % 3 == 0:
            rows.append(row(i, "math", f"what is {i} plus {i + 1} in arithmetic", 1, 1))
        elif i % 3 == 1:
            rows.append(row(i, "math", f"prove theorem {i} about prime gaps rigorously", 0, 0))
        else:
            rows.append(row(i, "writing", f"summarise paragraph {i} of this essay briefly", 0, 1))
    return rows


@pytest.mark.parametrize(
    ("qualities", "expected"),
    [
        ((1, 1, 1), "easy"),
        ((0, 1, 1), "moderate"),
        ((0, 0, 1), "hard"),
        ((0, 0, 0), "hard"),
        ((0.4, 0.6, 1), "moderate"),
    ],
)
def test_learned_difficulty(qualities: tuple[float, float, float], expected: str) -> None:
    assert learned_difficulty(row(0, "t", "x", *qualities), TIERS, 0.5) == expected


def test_learned_difficulty_two_tiers() -> None:
    two = [("cheap", "tiny"), ("best", "huge")]
    assert learned_difficulty(row(0, "t", "x", 0, 1), two, 0.5) == "hard"
    assert learned_difficulty(row(0, "t", "x", 1, 0), two, 0.5) == "easy"


def test_missing_tier_model_is_skipped() -> None:
    r = OutcomeRow("1", "x", "t", {"tiny": Outcome(1, 0.1)})
    assert learned_difficulty(r, TIERS, 0.5) is None


def test_learn_intents_groups_by_task_and_dedupes() -> None:
    rows = [*synthetic(12), row(99, "math", "WHAT IS 0 PLUS 1 IN ARITHMETIC", 0, 0)]
    intents, skipped = learn_intents(rows, TIERS)
    assert [i.name for i in intents] == ["math", "writing"]
    assert skipped == 1
    math_intent = intents[0]
    difficulties = [math_intent.exemplar_difficulty(e) for e in math_intent.exemplars]
    assert difficulties.count("easy") == 4 and difficulties.count("hard") == 4


def test_learned_config_fits_prices_and_starts_open() -> None:
    config = learned_config(synthetic(), TIERS)
    assert config.tiers == ["small", "mid", "flagship"]
    assert config.thresholds.margin is None and config.thresholds.min_similarity is None
    assert config.scoring.long_text == "tail"
    tiny, huge = config.model("tiny"), config.model("huge")
    assert huge.input_usd_per_mtok == pytest.approx(100 * tiny.input_usd_per_mtok, rel=1e-3)


@pytest.mark.parametrize(
    "spec", ["small=a", "small=a,mid=b,big=c,huge=d", "small=a,mid=a", "small", "small=,mid=b"]
)
def test_parse_tiers_rejects(spec: str) -> None:
    with pytest.raises(InputError, match="--tiers"):
        parse_tiers(spec)


def test_oracle_and_gap_metrics() -> None:
    r = row(0, "t", "x", 0, 1)
    assert oracle(r, 0.5) == (1.0, 0.01)
    assert oracle(row(0, "t", "x", 0, 0, 0), 0.5) == (0.0, 0.001)
    # a router that recovers the whole gap with no strong calls has APGR 1
    assert apgr([(0.0, 1.0)], weak=0.5, strong=1.0) == pytest.approx(1.0)
    # on the diagonal (like random routing): 0.5
    assert apgr([(0.5, 0.75)], weak=0.5, strong=1.0) == pytest.approx(0.5)
    assert math.isnan(apgr([], weak=1.0, strong=1.0))
    assert calls_for_gap([(0.2, 0.6), (0.5, 0.9)], 0.5, 1.0, 0.8) == 0.5
    assert calls_for_gap([(0.2, 0.6)], 0.5, 1.0, 0.8) is None


def test_evaluate_outcomes_with_the_fake_encoder() -> None:
    rows = synthetic(90)
    report = evaluate_outcomes(rows[:60], rows[60:], TIERS, HashingEncoder(), long_text="head")
    names = {b.name for b in report.baselines}
    assert {"always-flagship", "always-cheapest", "oracle", "tiny", "medium", "huge"} <= names
    top = next(b for b in report.baselines if b.name == "always-flagship")
    assert top.quality == 1.0 and top.cost_usd == pytest.approx(3.0)
    # the learned router sends arithmetic to the tiny model and proofs to the huge one
    best = max(report.curve, key=lambda p: (p.quality, p.savings))
    assert best.quality == 1.0 and best.savings > 0.5
    assert report.savings_at["100%"] is not None and report.savings_at["100%"] > 0.5


def test_read_outcomes_names_the_bad_line(tmp_path: Path) -> None:
    path = tmp_path / "o.jsonl"
    good = {"id": "1", "text": "x", "task": "t", "outcomes": {"a": {"quality": 1, "cost_usd": 0.1}}}
    path.write_text(json.dumps(good) + "\n" + json.dumps({"text": "y"}) + "\n")
    with pytest.raises(ConfigError, match=r"o\.jsonl:2: not an outcomes row"):
        read_outcomes_jsonl(path)


def test_read_outcomes_names_a_line_that_is_not_json(tmp_path: Path) -> None:
    path = tmp_path / "o.jsonl"
    path.write_text("\n[1, 2]\n")
    with pytest.raises(ConfigError, match=r"o\.jsonl:2: expected an outcomes row"):
        read_outcomes_jsonl(path)
    path.write_text("{not json\n")
    with pytest.raises(ConfigError, match=r"o\.jsonl:1: invalid JSON"):
        read_outcomes_jsonl(path)
    path.write_text("\n")
    with pytest.raises(ConfigError, match="no rows"):
        read_outcomes_jsonl(path)


def test_held_out_rows_are_split_as_the_cli_always_did(tmp_path: Path) -> None:
    rows = synthetic(20)
    path = write_rows(tmp_path / "train.outcomes.jsonl", rows)
    train, test = train_test_rows(path, None, held_out=0.3, seed=4)
    # the shuffle `eval outcomes` wrote by hand before the shared seeded split
    order = list(range(20))
    random.Random(4).shuffle(order)
    assert [r.id for r in train] == [rows[i].id for i in order[:14]]
    assert [r.id for r in test] == [rows[i].id for i in order[14:]]
    other = write_rows(tmp_path / "test.outcomes.jsonl", rows[:5])
    assert [len(part) for part in train_test_rows(path, other)] == [20, 5]
    with pytest.raises(InputError, match="--held-out"):
        train_test_rows(path, None, held_out=0.0)


def test_the_flagship_must_be_the_last_tier() -> None:
    assert tiers_with_flagship("small=tiny,flagship=huge", "huge")[-1] == ("flagship", "huge")
    with pytest.raises(InputError, match="--flagship tiny must be the last"):
        tiers_with_flagship("small=tiny,flagship=huge", "tiny")


def test_evaluate_outcome_files_loads_the_encoder_last(tmp_path: Path) -> None:
    path = write_rows(tmp_path / "o.outcomes.jsonl", synthetic(90))
    loaded: list[str] = []

    def encoder() -> HashingEncoder:
        loaded.append("encoder")
        return HashingEncoder()

    with pytest.raises(InputError, match="--tiers"):
        evaluate_outcome_files(path, None, "small", encoder)
    assert loaded == []
    report = evaluate_outcome_files(
        path, None, "small=tiny,mid=medium,flagship=huge", encoder, long_text="head"
    )
    assert isinstance(report, OutcomesReport) and loaded == ["encoder"]
    assert report.test_rows == 27 and report.savings_at["100%"] is not None


def write_rows(path: Path, rows: list[OutcomeRow]) -> Path:
    """Rows as an outcomes file; answers stored as RouterBench does, the repr of a
    one-element list."""
    path.write_text(
        "".join(
            json.dumps(
                {
                    "id": r.id,
                    "text": r.text,
                    "task": r.task,
                    "outcomes": {
                        m: {"quality": o.quality, "cost_usd": o.cost_usd}
                        for m, o in r.outcomes.items()
                    },
                    **(
                        {"responses": {m: repr([a]) for m, a in r.responses.items()}}
                        if r.responses
                        else {}
                    ),
                }
            )
            + "\n"
            for r in rows
        )
    )
    return path


@pytest.mark.parametrize(
    ("stored", "answer"),
    [
        ("['B\\n']", "B\n"),
        ("plain answer", "plain answer"),
        ("['a', 'b']", "['a', 'b']"),  # not one answer: kept as it is
        ("[not python", "[not python"),
    ],
)
def test_unwrap_response(stored: str, answer: str) -> None:
    from modeltriage.learn.outcome_data import unwrap_response

    assert unwrap_response(stored) == answer


def test_learn_cli_writes_a_loadable_intents_dir(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    source = write_rows(tmp_path / "train.outcomes.jsonl", synthetic())
    out = tmp_path / "learned"
    assert (
        main(
            [
                "learn",
                str(source),
                "--tiers",
                "small=tiny,mid=medium,flagship=huge",
                "--out",
                str(out),
            ]
        )
        == 0
    )
    assert "wrote 2 intents, 60 exemplars" in capsys.readouterr().out
    intent_set = load_intents(out)
    assert {m.name for m in intent_set.config.models} == {"tiny", "medium", "huge"}
    router = Router.in_memory(intent_set, HashingEncoder(), exact_numpy=True)
    assert router.route("what is 500 plus 501 in arithmetic").model == "tiny"
    assert router.route("prove theorem 500 about prime gaps rigorously").model == "huge"
    # never overwrites
    assert (
        main(
            [
                "learn",
                str(source),
                "--tiers",
                "small=tiny,mid=medium,flagship=huge",
                "--out",
                str(out),
            ]
        )
        == 1
    )
    assert "choose an empty --out" in capsys.readouterr().err
    assert (
        main(
            [
                "learn",
                str(source),
                "--tiers",
                "small=tiny,flagship=gpt-9",
                "--out",
                str(tmp_path / "x"),
            ]
        )
        == 1
    )
    assert "no outcomes for ['gpt-9']" in capsys.readouterr().err


@pytest.mark.real
def test_tune_on_outcomes_through_the_real_encoder(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rows = synthetic(90)
    train = write_rows(tmp_path / "train.outcomes.jsonl", rows[:60])
    test = write_rows(tmp_path / "test.outcomes.jsonl", rows[60:])
    out = tmp_path / "learned"
    tiers = "small=tiny,mid=medium,flagship=huge"
    assert main(["learn", str(train), "--tiers", tiers, "--out", str(out)]) == 0
    capsys.readouterr()
    argv = ["tune", "--intents", str(out), "--outcomes", str(test), "--floor", "1.0", "--json"]
    assert main([*argv, "--write"]) == 0
    result = json.loads(capsys.readouterr().out)
    chosen = result["chosen"]
    assert chosen["quality"] == 1.0 and chosen["savings"] > 0.5
    assert result["measured_share"] == 1.0
    thresholds = load_intents(out).config.thresholds
    assert thresholds.difficulty_confidence == chosen["difficulty_confidence"]
