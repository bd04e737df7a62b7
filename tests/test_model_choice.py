"""Each intent's model chosen from outcomes over any number of models, without answers:
the pure choice and its safety margin (table tests on made-up rows), the kNN baseline,
bad input (qualities outside 0..1, missing costs, gaps), `learn --plans` and
`eval outcomes --plans` through the fake encoder, and once through the real one on a
slice of llmrouter9 (tests/fixtures/llmrouter9_tiny, MIT, see its README)."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from modeltriage import ConfigError, HashingEncoder, InputError, load_intents
from modeltriage.cli.main import main
from modeltriage.cli.outcomes import MARGIN_Z
from modeltriage.learn.outcome_compare import compare_plans
from modeltriage.learn.outcome_data import Outcome, OutcomeRow, read_outcomes_jsonl
from modeltriage.learn.outcome_knn import knn_choices, knn_estimates
from modeltriage.learn.outcome_margin import (
    MARGINS,
    Z_DEFAULT,
    MarginScore,
    fold_indices,
    learn_margin,
    mean_score,
    ratio_std_error,
)
from modeltriage.learn.outcome_prices import estimated_cost, priced_rows, read_prices
from modeltriage.learn.planlearning import learn_plans, plan_tiers
from modeltriage.learn.plans import (
    FLAGSHIP_NOW,
    GroupTable,
    Plan,
    choose_plans,
    group_table,
    group_tables,
    table_options,
)

from .conftest import REPO

COSTS = {"tiny": 0.001, "mini": 0.002, "mid": 0.01, "huge": 0.1}
TINY_FIXTURE = REPO / "tests" / "fixtures" / "llmrouter9_tiny" / "train.outcomes.jsonl"


def row(n: int, task: str, quality: dict[str, float]) -> OutcomeRow:
    return OutcomeRow(
        id=str(n),
        text=f"{task} question number {n}",
        task=task,
        outcomes={m: Outcome(q, COSTS[m]) for m, q in quality.items()},
    )


def rows_of(task: str, n: int, rates: dict[str, float], start: int = 0) -> list[OutcomeRow]:
    """``n`` rows where each model is right on the first ``rate`` share of them."""
    return [
        row(start + i, task, {m: 1.0 if i < round(rate * n) else 0.0 for m, rate in rates.items()})
        for i in range(n)
    ]


def groups() -> dict[str, list[OutcomeRow]]:
    # trivia: tiny as good as the flagship; maths: only mid comes close; law: nobody does
    return {
        "trivia": rows_of("trivia", 20, {"tiny": 0.8, "mini": 0.8, "mid": 0.8, "huge": 0.8}),
        "maths": rows_of("maths", 20, {"tiny": 0.2, "mini": 0.4, "mid": 0.9, "huge": 0.9}, 100),
        "law": rows_of("law", 20, {"tiny": 0.1, "mini": 0.1, "mid": 0.3, "huge": 0.9}, 200),
    }


@pytest.mark.parametrize(
    ("floor", "expected"),
    [
        # every intent at the flagship's level: the cheapest model that matches it
        (1.0, {"trivia": "tiny", "maths": "mid", "law": None}),
        # 70% (36.4 of 52 right answers): law to mid (6) is cheaper than maths to tiny
        (0.7, {"trivia": "tiny", "maths": "mid", "law": "mid"}),
        # 60%: law down to tiny
        (0.6, {"trivia": "tiny", "maths": "mid", "law": "tiny"}),
        # 45%: maths down to mini too
        (0.45, {"trivia": "tiny", "maths": "mini", "law": "tiny"}),
    ],
)
def test_the_cheapest_model_per_intent_that_keeps_the_floor(
    floor: float, expected: dict[str, str | None]
) -> None:
    choice = choose_plans(groups(), ["tiny", "mini", "mid"], "huge", floor=floor, answers=False)
    assert {g: p.first for g, p in choice.plans.items()} == expected
    assert choice.quality_share >= floor - 1e-9
    assert all(p.kind in ("single", "flagship") for p in choice.plans.values())


def test_a_margin_keeps_a_noisy_model_off_a_small_intent() -> None:
    # tiny matches the flagship on 5 prompts only by luck of which it got right
    small = [
        row(i, "quiz", {"tiny": q, "huge": h})
        for i, (q, h) in enumerate([(1, 0), (0, 1), (1, 1), (1, 0), (0, 1)])
    ]
    plain = choose_plans({"quiz": small}, ["tiny"], "huge", floor=1.0, answers=False)
    guarded = choose_plans({"quiz": small}, ["tiny"], "huge", floor=1.0, margin=1.0, answers=False)
    assert plain.plans["quiz"] == Plan("single", "tiny")
    assert guarded.plans["quiz"] == FLAGSHIP_NOW


def test_gaps_are_judged_where_known_never_as_zero() -> None:
    rows = rows_of("t", 10, {"tiny": 1.0, "huge": 1.0})
    # mini has an outcome on 4 of the 10 rows only, all right
    rows = [
        OutcomeRow(r.id, r.text, r.task, {**r.outcomes, "mini": Outcome(1.0, 0.0005)})
        if i < 4
        else r
        for i, r in enumerate(rows)
    ]
    table = group_table(rows, ["tiny", "mini"], "huge", answers=False)
    options = {o.plan.first: o for o in table_options(table)}
    assert options["mini"].quality == pytest.approx(10.0)  # 4 of 4 known, scaled to 10
    assert options["mini"].cost == pytest.approx(0.005)
    choice = choose_plans({"t": rows}, ["tiny", "mini"], "huge", floor=1.0, answers=False)
    assert choice.plans["t"] == Plan("single", "mini")


def test_a_model_known_on_too_few_rows_is_not_offered() -> None:
    rows = rows_of("t", 10, {"tiny": 1.0, "huge": 1.0})
    rows[0] = OutcomeRow("0", rows[0].text, "t", {**rows[0].outcomes, "mini": Outcome(1, 0)})
    table = group_table(rows, ["tiny", "mini"], "huge", answers=False)
    assert Plan("single", "mini") not in [o.plan for o in table_options(table)]


def test_without_answers_no_plan_compares_answers() -> None:
    table = group_table(groups()["maths"], ["tiny", "mini", "mid"], "huge", answers=False)
    assert table.plans == [FLAGSHIP_NOW, *(Plan("single", m) for m in ("tiny", "mini", "mid"))]
    with_answers = group_table(groups()["maths"], ["tiny", "mini", "mid"], "huge")
    assert any(p.needs_answers for p in with_answers.plans)


def test_folds_deal_every_group_into_every_fold() -> None:
    folds = fold_indices({"a": 10, "b": 3}, 3, seed=0)
    assert [len(f["a"]) for f in folds] == [4, 3, 3]
    assert sorted(np.concatenate([f["a"] for f in folds]).tolist()) == list(range(10))
    assert all(len(f["b"]) == 1 for f in folds)


def test_the_margin_is_learned_by_cross_validation() -> None:
    tables = group_tables(groups(), ["tiny", "mini", "mid"], "huge", answers=False)
    learned = learn_margin(tables, 0.98, folds=5, seed=0)
    assert [s.margin for s in learned.scores] == list(MARGINS)
    chosen = next(s for s in learned.scores if s.margin == learned.margin)
    assert chosen.lower(learned.z) >= 0.98
    assert all(
        s.savings <= chosen.savings + 1e-12 for s in learned.scores if s.lower(learned.z) >= 0.98
    )
    with pytest.raises(ValueError, match="folds"):
        learn_margin(tables, 0.98, folds=1)


def one_cheap_model(n: int, wrong: int) -> dict[str, GroupTable]:
    """One group of ``n`` prompts: the flagship always right, a model 100x cheaper wrong
    on ``wrong`` of them."""
    quality = np.ones((2, n))
    quality[1, :wrong] = 0.0
    cost = np.vstack([np.full(n, 0.1), np.full(n, 0.001)])
    plans = [FLAGSHIP_NOW, Plan("single", "cheap")]
    return {"g": GroupTable(plans, quality, cost, np.zeros((2, n), dtype=bool))}


@pytest.mark.parametrize(
    ("z", "repeats", "margin"),
    [
        # 98.5% held out, standard error 0.4 points: the pooled rule takes the cheap
        # model; its 95% lower bound (97.9%) misses the floor, so the margin grows until
        # the cheap model serves only where the folds' choices can afford it.
        (0.0, 1, 0.0),
        (0.0, 3, 0.0),
        (1.645, 1, 1.25),
        (1.645, 3, 1.0),
    ],
)
def test_the_margin_keeps_a_lower_bound_of_the_held_out_quality(
    z: float, repeats: int, margin: float
) -> None:
    learned = learn_margin(one_cheap_model(1000, 15), 0.98, z=z, repeats=repeats)
    assert (learned.margin, learned.z, learned.repeats) == (margin, z, repeats)
    first = learned.scores[0]
    assert first.quality_share == pytest.approx(0.985)
    assert first.std_error == pytest.approx(
        math.sqrt(15 * 0.985**2 + 985 * 0.015**2) / 999**0.5 * 1000**0.5 / 1000
    )
    chosen = next(s for s in learned.scores if s.margin == learned.margin)
    assert chosen.lower(z) >= 0.98
    assert all(s.lower(z) < 0.98 for s in learned.scores if s.savings > chosen.savings)


def test_no_margin_keeps_the_bound_then_the_best_bound_is_taken() -> None:
    # 50 prompts, 1 wrong: every fold whose kept rows are all right chooses the cheap
    # model at any margin, so no margin's bound reaches a floor of 1.
    learned = learn_margin(one_cheap_model(50, 1), 1.0, repeats=1)
    best = max(s.lower(learned.z) for s in learned.scores)
    chosen = next(s for s in learned.scores if s.margin == learned.margin)
    assert chosen.lower(learned.z) == best < 1.0


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"folds": 1}, "folds"),
        ({"z": -1.0}, "z must"),
        ({"z": math.nan}, "z must"),
        ({"repeats": 0}, "deal"),
        ({"margins": ()}, "no margins"),
    ],
)
def test_learn_margin_refuses_bad_arguments(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        learn_margin(one_cheap_model(20, 1), 0.98, **kwargs)


@pytest.mark.parametrize(
    ("num", "den", "expected"),
    [
        ([1, 1, 0, 1], [1, 1, 1, 1], 0.25),  # the binomial sqrt(p(1-p)/(n-1)) at p=0.75
        ([1, 1, 1], [1, 1, 1], 0.0),  # same as the flagship everywhere
        ([0.5, 0.5], [1, 1], 0.0),  # a constant ratio has no spread
        ([1], [1], 0.0),  # one prompt: no spread to measure
        ([0, 0], [0, 0], 0.0),  # the flagship never right: no share to bound
    ],
)
def test_ratio_std_error(num: list[float], den: list[float], expected: float) -> None:
    assert ratio_std_error(np.array(num, float), np.array(den, float)) == pytest.approx(expected)


def test_deals_average_share_savings_and_error_and_keep_the_worst_fold() -> None:
    a = MarginScore(0.5, 0.98, 0.6, 0.01, 0.95)
    b = MarginScore(0.5, 1.0, 0.4, 0.03, 0.97)
    assert mean_score([a, b]) == MarginScore(
        0.5, pytest.approx(0.99), pytest.approx(0.5), pytest.approx(0.02), 0.95
    )
    with pytest.raises(ValueError, match="no scores"):
        mean_score([])


def test_knn_estimates_weight_neighbours_and_skip_gaps() -> None:
    train = np.array([[1.0, 0.0], [0.8, 0.6], [0.0, 1.0]])
    quality = np.array([[1.0, 0.0], [0.0, np.nan], [0.0, 1.0]])
    est = knn_estimates(train, quality, np.array([[1.0, 0.0]]), k=2)
    # neighbours 0 (sim 1) and 1 (sim 0.8); model 1 is known on neighbour 0 only
    assert est[0, 0] == pytest.approx(1.0 / 1.8)
    assert est[0, 1] == pytest.approx(0.0)


@pytest.mark.parametrize(
    ("slack", "expected"),
    [(0.0, [1, 2]), (0.15, [0, 2]), (1.0, [0, 0])],
)
def test_knn_choices_take_the_cheapest_within_the_slack(slack: float, expected: list[int]) -> None:
    estimates = np.array([[0.8, 0.9, 0.9], [0.1, np.nan, 0.9]])
    assert knn_choices(estimates, [0, 1, 2], slack) == expected


def write(path: Path, rows: list[dict[str, object]]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def good_row(n: int, **quality: object) -> dict[str, object]:
    return {
        "id": str(n),
        "text": f"question {n}",
        "task": "t",
        "outcomes": {m: {"quality": q, "cost_usd": 0.1} for m, q in quality.items()},
    }


@pytest.mark.parametrize("bad", [1.5, -0.1, "1", True, [1]])
def test_a_quality_outside_0_to_1_names_the_file_and_line(tmp_path: Path, bad: object) -> None:
    path = write(tmp_path / "o.jsonl", [good_row(1, a=1.0), good_row(2, a=bad)])
    with pytest.raises(ConfigError, match=r"o\.jsonl:2: .*a: quality must be"):
        read_outcomes_jsonl(path)


def test_nan_and_infinite_qualities_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "o.jsonl"
    path.write_text('{"text": "x", "outcomes": {"a": {"quality": NaN, "cost_usd": 1}}}\n')
    with pytest.raises(ConfigError, match=r"o\.jsonl:1: .*quality must be from 0 to 1"):
        read_outcomes_jsonl(path)
    path.write_text('{"text": "x", "outcomes": {"a": {"quality": 1, "cost_usd": Infinity}}}\n')
    with pytest.raises(ConfigError, match=r"o\.jsonl:1: .*cost_usd must be a finite"):
        read_outcomes_jsonl(path)


def test_a_null_quality_is_a_gap(tmp_path: Path) -> None:
    path = write(tmp_path / "o.jsonl", [good_row(1, a=1.0, b=None)])
    assert set(read_outcomes_jsonl(path)[0].outcomes) == {"a"}


def test_missing_costs_are_an_error_naming_the_model_or_estimated(tmp_path: Path) -> None:
    data = good_row(1, a=1.0)
    data["outcomes"]["b"] = {"quality": 0.5, "cost_usd": None}  # type: ignore[index]
    path = write(tmp_path / "o.jsonl", [good_row(0, a=1.0), data])
    rows = read_outcomes_jsonl(path)
    with pytest.raises(InputError, match=r"o\.jsonl:2: model b has no cost_usd on 1 rows"):
        priced_rows(rows, None, path)
    with pytest.raises(InputError, match="model b"):
        priced_rows(rows, {"a": (1.0, 1.0)}, path)
    priced = priced_rows(rows, {"b": (1.0, 2.0)}, path)
    assert priced[1].outcomes["b"].cost_usd == pytest.approx(estimated_cost("question 1", (1, 2)))
    assert priced[1].outcomes["b"].quality == 0.5


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[]", "expected"),
        ('{"m": {"input_usd_per_mtok": 1}}', "exactly"),
        ('{"m": {"input_usd_per_mtok": -1, "output_usd_per_mtok": 1}}', "finite number"),
        ('{"m": {"input_usd_per_mtok": "x", "output_usd_per_mtok": 1}}', "expected a number"),
        ("{not json", "not a price list"),
    ],
)
def test_bad_price_lists(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "prices.json"
    path.write_text(text)
    with pytest.raises(ConfigError, match=message):
        read_prices(path)


def flat_rows() -> list[OutcomeRow]:
    return [r for members in groups().values() for r in members]


def test_plan_tiers_need_the_flagship_and_another_model() -> None:
    assert plan_tiers(flat_rows(), "huge") == [("cheap", "tiny"), ("flagship", "huge")]
    with pytest.raises(InputError, match="gpt-9"):
        plan_tiers(flat_rows(), "gpt-9")


def test_learned_intents_name_their_models() -> None:
    learned = learn_plans(flat_rows(), plan_tiers(flat_rows(), "huge"), None, floor=1.0)
    assert not learned.answers and learned.margin is not None
    models = {i.name: i.model for i in learned.intents}
    assert models["law"] is None and models["trivia"] == "tiny"


def test_compare_plans_scores_every_baseline_on_each_seed() -> None:
    rows = flat_rows() * 1
    tiers = plan_tiers(rows, "huge")
    report = compare_plans(rows, None, tiers, HashingEncoder(), seeds=(0, 1), progress=False)
    assert [s.seed for s in report.splits] == [0, 1]
    split = report.splits[0]
    names = {p.name for p in split.baselines}
    assert {"tiny", "mini", "mid", "huge", "always-flagship", "oracle"} <= names
    assert split.knn_curve and split.random and split.router_curve
    assert split.router.quality_share > 0 and not math.isnan(split.apgr["kNN"])


def outcome_lines() -> list[dict[str, object]]:
    out = []
    for r in flat_rows():
        out.append(
            {
                "id": r.id,
                "text": r.text,
                "task": r.task,
                "outcomes": {
                    m: {"quality": o.quality, "cost_usd": o.cost_usd} for m, o in r.outcomes.items()
                },
            }
        )
    return out


def test_learn_plans_cli_without_answers(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    source = write(tmp_path / "o.jsonl", outcome_lines())
    out = tmp_path / "intents"
    argv = [
        "learn",
        str(source),
        "--plans",
        "--flagship",
        "huge",
        "--floor",
        "1",
        "--out",
        str(out),
    ]
    assert main(argv, encoder=HashingEncoder()) == 0
    printed = capsys.readouterr().out
    assert "safety margin" in printed and "trivia" in printed
    loaded = load_intents(out)
    assert {i.name: i.model for i in loaded.intents}["trivia"] == "tiny"
    assert "model: tiny" in (out / "trivia.yaml").read_text()


def test_learn_plans_cli_bad_input(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    source = write(tmp_path / "o.jsonl", outcome_lines())
    out = str(tmp_path / "intents")
    assert main(["learn", str(source), "--plans", "--out", out], encoder=HashingEncoder()) == 1
    assert "--flagship" in capsys.readouterr().err
    argv = ["learn", str(source), "--plans", "--flagship", "huge", "--out", out, "--margin", "nan"]
    assert main(argv, encoder=HashingEncoder()) == 1
    assert "--margin" in capsys.readouterr().err
    argv = ["learn", str(source), "--plans", "--flagship", "huge", "--out", out, "--floor", "inf"]
    assert main(argv, encoder=HashingEncoder()) == 1
    assert "floor" in capsys.readouterr().err
    for z in ("-1", "nan", "1e308", "inf"):
        argv = ["learn", str(source), "--plans", "--flagship", "huge", "--out", out]
        assert main([*argv, "--margin-z", z], encoder=HashingEncoder()) == 1
        assert "--margin-z" in capsys.readouterr().err


def test_the_parser_default_z_is_the_learners() -> None:
    # Spelled out in the CLI so the parser does not import numpy.
    assert MARGIN_Z == Z_DEFAULT


def test_eval_outcomes_plans_cli_with_the_fake_encoder(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    source = write(tmp_path / "o.jsonl", outcome_lines())
    report = tmp_path / "r.json"
    argv = ["eval", "outcomes", "--train", str(source), "--plans", "--flagship", "huge"]
    assert main([*argv, "--seeds", "2", "--json", str(report)], encoder=HashingEncoder()) == 0
    printed = capsys.readouterr().out
    assert "per-model kNN" in printed and "mean" in printed and "worst" in printed
    assert len(json.loads(report.read_text())["splits"]) == 2
    assert main([*argv, "--seeds", "0"], encoder=HashingEncoder()) == 1
    # The earlier rule (the pooled held-out quality) is still there.
    assert main([*argv, "--seeds", "1", "--margin-z", "0"], encoder=HashingEncoder()) == 0


@pytest.mark.real
def test_model_choice_on_real_outcomes_through_the_real_encoder(
    real_encoder: object, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "intents"
    flagship = "llama-3.1-nemotron-51b-instruct"
    argv = ["learn", str(TINY_FIXTURE), "--plans", "--flagship", flagship, "--out", str(out)]
    assert main(argv, encoder=real_encoder) == 0  # type: ignore[arg-type]
    loaded = load_intents(out)
    assert {i.name for i in loaded.intents} == {"commonsense_qa", "gsm8k", "natural_qa"}
    argv = ["eval", "outcomes", "--train", str(TINY_FIXTURE), "--plans", "--flagship", flagship]
    assert main([*argv, "--seeds", "1"], encoder=real_encoder) == 0  # type: ignore[arg-type]
    printed = capsys.readouterr().out
    assert "router with learned plans" in printed and "oracle" in printed
