"""Cascades whose answers must all agree (issue 16): chosen from outcomes with answers,
written as an intent's `cascade.also_agree`, carried by the decision, checked by
`/escalate`; and plans chosen on the prompts the router really sends each intent."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from fastapi.testclient import TestClient

from modeltriage import ConfigError, HashingEncoder, Router, load_intents
from modeltriage.cli.main import main
from modeltriage.core.config import RouterConfig, Scoring
from modeltriage.core.constraints import Constraints
from modeltriage.core.decision import Neighbour
from modeltriage.core.escalation_settings import EscalationSettings
from modeltriage.core.intents import Intent, IntentCascade
from modeltriage.core.policy import decide
from modeltriage.followup.answers import Answer, check_answer
from modeltriage.learn.outcome_data import Outcome, OutcomeRow
from modeltriage.learn.outcome_intents import write_intents_dir
from modeltriage.learn.outcome_votes import voted_intents
from modeltriage.learn.planlearning import learn_plans
from modeltriage.learn.plans import FLAGSHIP_NOW, Plan, candidate_plans, choose_plans, serve

from .conftest import ROUTER_YAML, Serve
from .test_outcomes import write_rows

TIERS = [("small", "tiny"), ("flagship", "huge")]
COSTS = {"tiny": 0.001, "mini": 0.002, "mid": 0.01, "huge": 0.1}
# On each of three fifths of the prompts two cheap models agree on the same wrong answer
# and the third is right: every pair lets a fifth through, the three together catch all.
WRONG_PAIR = {0: ("tiny", "mini"), 1: ("tiny", "mid"), 2: ("mini", "mid")}


def trio(n: int, text: str = "") -> OutcomeRow:
    wrong = WRONG_PAIR.get(n % 5, ())
    return OutcomeRow(
        id=str(n),
        text=text or f"trio riddle number {n}",
        task="trio",
        outcomes={m: Outcome(0.0 if m in wrong else 1.0, c) for m, c in COSTS.items()},
        responses={m: "A" if m in wrong else "B" for m in COSTS},
    )


ALL_THREE = Plan("cascade", "tiny", "mini", ("mid",))


@pytest.mark.parametrize(
    ("n", "quality", "cost", "escalated"),
    [
        (3, 1.0, 0.013, False),  # all agree: tiny's answer, three answers paid
        (0, 1.0, 0.113, True),  # mid disagrees with the wrong pair: the flagship answers
        (2, 1.0, 0.113, True),  # tiny is right, but the others disagree: escalated
    ],
)
def test_serve_all_must_agree(n: int, quality: float, cost: float, escalated: bool) -> None:
    got = serve(ALL_THREE, trio(n), "huge")
    assert (got.quality, got.escalated) == (quality, escalated)
    assert got.cost == pytest.approx(cost)
    assert ALL_THREE.label == "tiny, checked by mini, mid (all must agree)"
    assert ALL_THREE.models == ("tiny", "mini", "mid")


@pytest.mark.parametrize(("agree", "cascades"), [(1, 0), (2, 3), (3, 4)])
def test_candidate_plans_up_to_agree_models(agree: int, cascades: int) -> None:
    plans = candidate_plans(
        [trio(i) for i in range(10)], ["tiny", "mini", "mid"], "huge", 3, True, agree
    )
    assert sum(p.kind == "cascade" for p in plans) == cascades
    assert (ALL_THREE in plans) == (agree >= 3)


@pytest.mark.parametrize(("agree", "expected"), [(2, FLAGSHIP_NOW), (3, ALL_THREE)])
def test_only_three_that_agree_keep_the_full_quality(agree: int, expected: Plan) -> None:
    groups = {"trio": [trio(i) for i in range(20)]}
    choice = choose_plans(groups, ["tiny", "mini", "mid"], "huge", floor=1.0, agree=agree)
    assert choice.plans == {"trio": expected}
    assert choice.quality_share == pytest.approx(1.0)


def test_learned_all_agree_plans_are_intent_yaml_a_router_follows(tmp_path: Path) -> None:
    learned = learn_plans([trio(i) for i in range(20)], TIERS, None, floor=1.0, margin=0.0)
    intent = learned.intents[0]
    assert intent.cascade is not None
    assert (intent.model, intent.cascade.second_opinion, intent.cascade.also_agree) == (
        "tiny",
        "mini",
        ["mid"],
    )
    write_intents_dir(tmp_path / "out", learned.config, learned.intents, "test")
    assert "also_agree:\n  - mid" in (tmp_path / "out" / "trio.yaml").read_text()
    router = Router.in_memory(load_intents(tmp_path / "out"), HashingEncoder(), exact_numpy=True)
    decision = router.route("trio riddle number 7")
    assert decision.cascade is not None
    assert (decision.cascade.second_opinion, decision.cascade.also_agree) == ("mini", ["mid"])
    assert "ask mini, mid too and escalate unless all answers agree" in decision.explanation


CONFIG = RouterConfig.model_validate(yaml.safe_load(ROUTER_YAML))


def hours(cascade: IntentCascade) -> dict[str, Intent]:
    return {"hours": Intent(name="hours", difficulty="easy", cascade=cascade, exemplars=["x"])}


def test_the_decision_names_every_opinion_and_pays_for_them() -> None:
    near = [Neighbour(intent="hours", text="x", difficulty="easy", similarity=0.9)]
    plan = IntentCascade(second_opinion="small-b", also_agree=["mid-a"])
    v = decide(near, CONFIG, hours(plan), 20)
    assert v.cascade is not None
    assert (v.cascade.second_opinion, v.cascade.also_agree) == ("small-b", ["mid-a"])
    both = (20 * 0.2 + 300 * 0.8 + 20 * 2.0 + 300 * 8.0) / 1e6
    assert v.cascade.second_opinion_cost_usd == pytest.approx(both)
    # an unhealthy opinion is dropped; the others still must agree
    sick = decide(near, CONFIG, hours(plan), 20, Constraints(unhealthy=frozenset({"small-b"})))
    assert sick.cascade is not None
    assert (sick.cascade.second_opinion, sick.cascade.also_agree) == ("mid-a", [])
    assert "second opinion small-b is marked unhealthy" in sick.explanation


@pytest.mark.parametrize(
    ("yaml_text", "line", "message"),
    [
        ("cascade:\n  also_agree: [small-b]\n", 3, "also_agree needs second_opinion"),
        (
            "cascade:\n  second_opinion: small-b\n  also_agree:\n    - small-a\n    - gpt-9\n",
            7,
            "unknown model 'gpt-9'",
        ),
        ("cascade:\n  second_opinion: small-b\n  also_agree: small-a\n", 5, "also_agree"),
    ],
)
def test_bad_also_agree_names_the_file_and_line(
    make_intents: object, yaml_text: str, line: int, message: str
) -> None:
    text = f"name: a\ndifficulty: easy\n{yaml_text}exemplars:\n  - hi\n"
    directory = make_intents({"a.yaml": text})  # type: ignore[operator]
    with pytest.raises(ConfigError) as caught:
        load_intents(directory)
    assert f"a.yaml:{line}" in str(caught.value) and message in str(caught.value)


@pytest.mark.parametrize(
    ("more", "escalate", "detail"),
    [
        ([], False, "keep the answer"),
        (["(B)", "b"], False, "keep the answer"),
        (["B", "C"], True, "1 of 3 other answers picks another choice"),
    ],
)
def test_every_answer_must_agree(more: list[str], escalate: bool, detail: str) -> None:
    check = check_answer("B", EscalationSettings(), second_answer="B", more_answers=more)
    assert check.escalate is escalate and detail in check.detail


def test_escalate_with_more_answers_over_http(fake_router: Router, serve: Serve) -> None:
    client: TestClient = serve(fake_router)
    body = {"answer": "B", "model": "small-a", "second_answer": "B", "more_answers": ["B", "A"]}
    r = client.post("/escalate", json=body)
    assert r.status_code == 200 and r.json()["reasons"] == ["disagreement"]
    for bad, status in (
        ({**body, "more_answers": ["B"] * 9}, 422),
        ({**body, "more_answers": [1]}, 422),
        ({**body, "more_answers": "B"}, 422),
        ({**body, "more_answers": ["x" * 300_000]}, 413),
    ):
        r = client.post("/escalate", json=bad)
        assert r.status_code == status, r.text
    answer = Answer(answer="B", second_answer="B", more_answers=["B", "A"])
    assert fake_router.escalate(answer, model="small-a").escalate


def test_plans_are_chosen_on_the_prompts_each_intent_is_voted() -> None:
    # Half of `look` reads exactly like `trio` and is voted into it by its neighbours.
    rows = [trio(i) for i in range(20)]
    rows += [
        OutcomeRow(
            str(100 + i),
            f"trio riddle number {100 + i}" if i % 2 else f"look thing {i}",
            "look",
            r.outcomes,
            r.responses,
        )
        for i, r in enumerate(trio(i) for i in range(20))
    ]
    own = [r.task or "" for r in rows]
    voted = voted_intents(rows, own, HashingEncoder(), Scoring(top_k=20, aggregation="vote"))
    assert voted[:20] == ["trio"] * 20
    assert [v for v, r in zip(voted[20:], rows[20:], strict=True) if "trio" in r.text] == [
        "trio"
    ] * 10
    aware = learn_plans(rows, TIERS, HashingEncoder(), floor=1.0, margin=0.0)
    blind = learn_plans(rows, TIERS, HashingEncoder(), floor=1.0, margin=0.0, route_aware=False)
    assert aware.vote_accuracy is not None and 0.7 <= aware.vote_accuracy < 1.0
    assert blind.vote_accuracy is None
    assert aware.tables["trio"].quality.shape[1] > blind.tables["trio"].quality.shape[1] == 20


def test_learn_plans_cli_refuses_bad_agree(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    source = write_rows(tmp_path / "rows.outcomes.jsonl", [trio(i) for i in range(20)])
    argv = ["learn", str(source), "--plans", "--flagship", "huge", "--out", str(tmp_path / "o")]
    for bad in ("0", "9"):
        assert main([*argv, "--agree", bad], encoder=HashingEncoder()) == 1
        assert "--agree must be from 1 to 8 models" in capsys.readouterr().err
