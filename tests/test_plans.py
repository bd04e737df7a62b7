"""Serving plans per intent from outcomes with answers: the pure choice (table-tested),
intents made from it, and `learn --plans` / `eval outcomes --plans` end to end."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from modeltriage import HashingEncoder, Router, load_intents
from modeltriage.cli.main import main
from modeltriage.learn.embedding_cache import CachingEncoder
from modeltriage.learn.outcome_compare import Comparison, evaluate_split
from modeltriage.learn.outcome_data import Outcome, OutcomeRow
from modeltriage.learn.outcome_files import evaluate_outcome_files
from modeltriage.learn.planlearning import decision_plan, learn_plans, plan_intents
from modeltriage.learn.plans import FLAGSHIP_NOW, Plan, candidate_plans, choose_plans, serve

from .test_outcomes import write_rows

TIERS = [("small", "tiny"), ("flagship", "huge")]
COSTS = {"tiny": 0.001, "mini": 0.002, "mid": 0.01, "huge": 0.1}


def row(
    n: int, task: str, right: dict[str, float], answers: dict[str, str], text: str = ""
) -> OutcomeRow:
    return OutcomeRow(
        id=str(n),
        text=text or f"{task} question number {n}",
        task=task,
        outcomes={m: Outcome(right.get(m, 1.0), c) for m, c in COSTS.items()},
        responses=answers,
    )


def quiz(n: int) -> OutcomeRow:
    """Multiple choice. Each cheap model is wrong on a fifth of the prompts, each on
    others, and then disagrees with the rest; elsewhere all agree and are right."""
    answers = {"tiny": "B", "mini": "B", "mid": "B", "huge": "B"}
    wrong = {0: "tiny", 1: "mini", 2: "mid"}.get(n % 5)
    if wrong is None:
        return row(n, "quiz", {}, answers)
    return row(n, "quiz", {wrong: 0.0}, {**answers, wrong: "A"})


def proof(n: int) -> OutcomeRow:
    """Only the flagship proves anything; the cheap answers even agree (wrongly)."""
    wrong = {"tiny": 0.0, "mini": 0.0, "mid": 0.0}
    return row(n, "proof", wrong, {"tiny": "qed", "mini": "qed", "mid": "qed", "huge": "QED!"})


@pytest.mark.parametrize(
    ("plan", "n", "expected"),
    [
        (FLAGSHIP_NOW, 1, (1.0, 0.1, False)),
        (Plan("single", "tiny"), 0, (0.0, 0.001, False)),
        (Plan("cascade", "tiny", "mini"), 3, (1.0, 0.003, False)),  # agree: keep tiny's
        (Plan("cascade", "tiny", "mini"), 0, (1.0, 0.103, True)),  # disagree: flagship
        (Plan("cascade", "tiny", "mini"), 1, (1.0, 0.103, True)),
    ],
)
def test_serve(plan: Plan, n: int, expected: tuple[float, float, bool]) -> None:
    got = serve(plan, quiz(n), "huge")
    assert (got.quality, got.escalated) == (expected[0], expected[2])
    assert got.cost == pytest.approx(expected[1])


def test_a_missing_answer_escalates() -> None:
    silent = row(1, "quiz", {}, {"tiny": "B"})
    assert serve(Plan("cascade", "tiny", "mini"), silent, "huge").escalated


def test_candidate_plans_take_the_most_often_right_cheap_first() -> None:
    rows = [proof(i) for i in range(3)] + [quiz(i) for i in range(5)]
    plans = candidate_plans(rows, ["tiny", "mini", "mid"], "huge", candidates=2)
    # every cheap model alone; all three are as often right: the cheapest two cascade
    assert plans == [
        FLAGSHIP_NOW,
        Plan("single", "tiny"),
        Plan("single", "mini"),
        Plan("single", "mid"),
        Plan("cascade", "tiny", "mini"),
    ]


def groups() -> dict[str, list[OutcomeRow]]:
    return {"quiz": [quiz(i) for i in range(20)], "proof": [proof(i) for i in range(20, 30)]}


@pytest.mark.parametrize(
    ("floor", "quiz_plan", "proof_plan"),
    [
        # 100%: the quiz's wrong answers must be caught: a cascade, never tiny alone
        (1.0, Plan("cascade", "tiny", "mini"), FLAGSHIP_NOW),
        # 85% of the flagship: tiny alone on the quiz (4 of 30 lost) is cheaper
        (0.85, Plan("single", "tiny"), FLAGSHIP_NOW),
    ],
)
def test_choose_plans(floor: float, quiz_plan: Plan, proof_plan: Plan) -> None:
    choice = choose_plans(groups(), ["tiny", "mini", "mid"], "huge", floor=floor)
    assert choice.plans == {"quiz": quiz_plan, "proof": proof_plan}
    assert choice.quality_share >= floor
    assert 0 < choice.savings < 1


def test_choose_plans_refuses_bad_input() -> None:
    with pytest.raises(ValueError, match="floor"):
        choose_plans(groups(), ["tiny"], "huge", floor=0)
    with pytest.raises(ValueError, match="no rows"):
        choose_plans({}, ["tiny"], "huge")
    with pytest.raises(ValueError, match="flagship gpt-9"):
        choose_plans(groups(), ["tiny"], "gpt-9")


def test_plan_intents_say_how_each_group_is_served() -> None:
    plans = {"quiz": Plan("cascade", "tiny", "mini"), "proof": FLAGSHIP_NOW}
    quiz_intent, proof_intent = sorted(plan_intents(groups(), plans, "huge"), key=lambda i: i.name)[
        ::-1
    ]
    assert (proof_intent.name, proof_intent.difficulty, proof_intent.model) == (
        "proof",
        "hard",
        None,
    )
    assert (quiz_intent.model, quiz_intent.difficulty) == ("tiny", "easy")
    assert quiz_intent.cascade is not None
    assert (quiz_intent.cascade.second_opinion, quiz_intent.cascade.escalate_to) == ("mini", "huge")


def all_rows() -> list[OutcomeRow]:
    return [quiz(i) for i in range(40)] + [proof(i) for i in range(40, 60)]


def test_learned_plans_route_through_a_router() -> None:
    learned = learn_plans(all_rows(), TIERS, None, floor=1.0)
    names = {m.name: m for m in learned.config.models}
    assert names["mini"].specialised and not names["tiny"].specialised
    router = Router.in_memory(load_intents_from(learned), HashingEncoder(), exact_numpy=True)
    decision = router.route("quiz question number 3")
    assert (decision.model, decision.reason) == ("tiny", "cascade")
    assert decision.cascade is not None and decision.cascade.second_opinion == "mini"
    assert router.route("proof question number 41").model == "huge"


def load_intents_from(learned: object) -> object:
    from modeltriage.core.intents import IntentSet

    return IntentSet(config=learned.config, intents=learned.intents)  # type: ignore[attr-defined]


def test_evaluate_split_with_the_fake_encoder() -> None:
    rows = all_rows()
    train = rows[0:30] + rows[40:50]
    test = rows[30:40] + rows[50:60]
    split = evaluate_split(
        train,
        test,
        TIERS,
        CachingEncoder(HashingEncoder(), progress=False),
        seed=None,
        floor=1.0,
        candidates=3,
        agree=2,
        good=0.5,
        long_text="head",
        group_by="task",
        clusters=None,
    )
    assert split.router.quality_share == pytest.approx(1.0)
    assert split.router.savings > 0.25
    assert split.intent_accuracy == 1.0
    assert split.plans == {"proof": "flagship now", "quiz": "tiny, checked by mini"}
    assert {p.name for p in split.baselines} >= {"always-flagship", "oracle", "tiny", "huge"}


def test_routed_cascades_escalate_exactly_on_disagreement() -> None:
    learned = learn_plans(all_rows()[:30] + all_rows()[40:50], TIERS, None, floor=1.0, agree=2)
    router = Router.in_memory(load_intents_from(learned), HashingEncoder(), exact_numpy=True)
    held = [quiz(i) for i in range(30, 40)]
    for r in held:
        plan = decision_plan(router.route(r.text), "huge")
        served = serve(plan, r, "huge")
        assert served.escalated == (len(set(r.responses[m] for m in ("tiny", "mini"))) > 1)
        assert served.quality == 1.0  # a wrong tiny answer is always caught


def test_evaluate_outcome_files_scores_plans_on_held_out_rows(tmp_path: Path) -> None:
    source = write_rows(tmp_path / "rows.outcomes.jsonl", all_rows())
    report = evaluate_outcome_files(
        source, None, "small=tiny,flagship=huge", HashingEncoder, plans=True, floor=1.0, seeds=2
    )
    assert isinstance(report, Comparison) and report.floor == 1.0 and report.answers
    assert [s.test_rows for s in report.splits] == [round(len(all_rows()) * 0.3)] * 2


def test_plans_without_answers_choose_one_model_each() -> None:
    bare = [OutcomeRow(r.id, r.text, r.task, r.outcomes) for r in all_rows()]
    # On 60 prompts the held-out 86.7% is +-4.4 points: its 95% lower bound misses 0.8
    # and would keep the flagship; this test is about the kind of plan, not the bound.
    learned = learn_plans(bare, TIERS, None, floor=0.8, margin_z=0.0)
    assert not learned.answers
    assert all(i.cascade is None for i in learned.intents)
    assert {i.name: i.model for i in learned.intents}["quiz"] == "tiny"


def test_learn_plans_cli_writes_loadable_intents(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    source = write_rows(tmp_path / "rows.outcomes.jsonl", all_rows())
    out = tmp_path / "planned"
    argv = ["learn", str(source), "--tiers", "small=tiny,flagship=huge", "--out", str(out)]
    assert main([*argv, "--plans", "--floor", "1"], encoder=HashingEncoder()) == 0
    printed = capsys.readouterr().out
    assert "wrote 2 intents" in printed and "quiz: learned plan: tiny, checked by mini" in printed
    intent_set = load_intents(out)
    quiz_intent = next(i for i in intent_set.intents if i.name == "quiz")
    assert quiz_intent.cascade is not None and quiz_intent.cascade.second_opinion == "mini"


@pytest.mark.real
def test_eval_outcomes_plans_cli_with_the_real_encoder(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    source = write_rows(tmp_path / "rows.outcomes.jsonl", all_rows())
    report = tmp_path / "plans.json"
    argv = ["eval", "outcomes", "--train", str(source), "--tiers", "small=tiny,flagship=huge"]
    assert main([*argv, "--plans", "--floor", "1", "--seeds", "1", "--json", str(report)]) == 0
    printed = capsys.readouterr().out
    assert "router with learned plans" in printed and "per-model kNN" in printed
    routed = json.loads(report.read_text())["splits"][0]["router"]
    assert routed["quality_share"] == pytest.approx(1.0) and routed["savings"] > 0.25
