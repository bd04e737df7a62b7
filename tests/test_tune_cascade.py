"""`tune --learn-cascade`: cascade_margin learned from the log's checked answers (the pure
pieces table-tested; the command over a real SQLite decision log)."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
import yaml

from modeltriage import HashingEncoder, Router
from modeltriage.cli.main import main
from modeltriage.core.config import RouterConfig
from modeltriage.core.decision import CascadePlan, Verdict
from modeltriage.learn.checked_answers import checked_answers, planned_outcome
from modeltriage.learn.simulation import read_traffic
from modeltriage.learn.tuning import Case, QualityModel, case_outcome
from modeltriage.log.entries import EventEntry, FeedbackEntry, LogEntry

from .conftest import REPO, ROUTER_YAML
from .test_cli import copy_shipped

T0 = datetime(2026, 1, 1, tzinfo=timezone.utc)


def logged(n: int, plan: bool = True) -> LogEntry:
    return LogEntry(
        decision_id=f"d{n}",
        created_at=T0 + timedelta(minutes=n),
        text="hi",
        text_sha256="0" * 64,
        intent="hours",
        runner_up=None,
        difficulty="easy",
        tier="small",
        model="small-a",
        confidence=0.9,
        margin=0.3,
        cascaded=False,
        reason="cascade" if plan else "confident",
        estimated_cost_usd=0.001,
        latency_ms=1.0,
        index_version="v",
        cascade_to="big-a" if plan else None,
    )


def check(n: int, to: str | None, minute: int = 0) -> EventEntry:
    return EventEntry(
        "escalation",
        "small-a",
        to,
        "d",
        f"d{n}",
        created_at=T0 + timedelta(hours=1, minutes=minute),
    )


def fb(n: int, quality: float, model: str | None = None) -> FeedbackEntry:
    return FeedbackEntry(decision_id=f"d{n}", quality=quality, source="judge", model=model)


def test_checked_answers_count_checks_and_their_feedback() -> None:
    entries = [logged(i) for i in range(4)] + [logged(9, plan=False)]
    events = [
        check(0, None),  # kept
        check(1, "big-a"),  # escalated
        check(2, "big-a", minute=0),
        check(2, None, minute=5),  # checked again later: kept
        check(9, "big-a"),  # no plan: not a checked plan
        EventEntry("failover", "small-a", "small-b", "x", "d3", created_at=T0),
    ]
    feedback = [
        fb(0, 1.0),  # no model: the decision's model, kept
        fb(1, 0.0, "small-a"),  # the escalated decision's cheap answer: not counted
        fb(1, 0.8, "big-a"),  # the escalated answer
        fb(2, 0.5, "small-a"),
        fb(9, 0.0),
    ]
    found = checked_answers(entries, events, feedback)
    assert (found.checked, found.escalated, found.escalation_rate) == (3, 1, pytest.approx(1 / 3))
    assert found.kept_quality == pytest.approx(0.75)
    assert found.escalated_quality == pytest.approx(0.8)
    assert found.verdicts == {"d0": False, "d1": True, "d2": False}
    none = checked_answers(entries, [], feedback)
    assert (none.checked, none.escalation_rate, none.kept_quality) == (0, None, None)


@pytest.mark.parametrize(
    ("escalates", "kept", "up", "expected"),
    [
        (0.0, 0.6, 1.0, (1.0, 0.6)),
        (1.0, 0.6, 1.0, (11.0, 1.0)),
        (0.25, 0.6, 1.0, (3.5, 0.7)),
        (0.0, 0.6, None, (1.0, 0.6)),  # never escalates: the escalated quality is not needed
        (0.5, None, 1.0, (6.0, None)),
    ],
)
def test_planned_outcome(
    escalates: float, kept: float | None, up: float | None, expected: tuple[float, float | None]
) -> None:
    cost, quality = planned_outcome(1.0, 10.0, kept, up, escalates)
    assert cost == pytest.approx(expected[0])
    assert quality == (None if expected[1] is None else pytest.approx(expected[1]))


def test_planned_outcome_refuses_a_bad_probability() -> None:
    with pytest.raises(ValueError, match=r"0\.\.1"):
        planned_outcome(1.0, 1.0, 1.0, 1.0, 1.5)


CONFIG = RouterConfig.model_validate(yaml.safe_load(ROUTER_YAML))
PLANNED = Verdict(
    intent="hours",
    runner_up=None,
    difficulty="easy",
    tier="small",
    model="small-a",
    fallbacks=[],
    confidence=0.9,
    margin=0.3,
    cascaded=False,
    cascade=CascadePlan(
        escalate_to="big-a", tier="flagship", trigger="margin", estimated_cost_usd=1.0
    ),
    reason="cascade",
    explanation="",
    estimated_cost_usd=0.1,
    input_tokens=10,
)


@pytest.mark.parametrize(
    ("check_", "measured", "expected"),
    [
        (None, {}, (0.1 + 0.25 * 1.0, 0.25 * 0.9 + 0.75 * 0.7)),  # the log's rate, means
        (True, {}, (1.1, 0.9)),  # this request's own check escalated
        (False, {"small-a": 0.2}, (0.1, 0.2)),  # kept, and its own feedback
    ],
)
def test_a_plan_is_priced_by_its_check(
    check_: bool | None, measured: dict[str, float], expected: tuple[float, float]
) -> None:
    answers = checked_answers(
        [logged(i) for i in range(4)],
        [check(0, "big-a"), check(1, None), check(2, None), check(3, None)],
        [fb(0, 0.9, "big-a"), fb(1, 0.7)],
    )
    quality = QualityModel(CONFIG, {}, {}, answers)
    case = Case(neighbours=(), input_tokens=10, measured=measured, check=check_)
    outcome = case_outcome(case, PLANNED, quality)
    assert outcome.cost_usd == pytest.approx(expected[0])
    assert outcome.quality == pytest.approx(expected[1])
    # without the log's checks: counted as escalated, as before
    old = case_outcome(case, PLANNED, QualityModel(CONFIG, {}, {"flagship": 0.9}))
    assert old.cost_usd == pytest.approx(1.1)


def test_tune_learns_cascade_margin_from_a_sqlite_log(
    tmp_path: Path,
    fake_encoder: HashingEncoder,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    shipped = copy_shipped(tmp_path)
    unchecked = tmp_path / "unchecked.sqlite3"
    monkeypatch.setenv("MODELTRIAGE_LOG_URL", str(unchecked))
    with Router.load(shipped, encoder=fake_encoder, build_if_needed=True) as router:
        router.route_batch(["where is my order", "I want a refund"])
    monkeypatch.setenv("MODELTRIAGE_LOG_URL", str(tmp_path / "decisions.sqlite3"))
    rows = read_traffic(REPO / "examples" / "traffic" / "support_day.jsonl")[:200]
    argv = ["tune", "--intents", str(shipped), "--log", "--learn-cascade"]
    with Router.load(shipped, encoder=fake_encoder, build_if_needed=True) as router:
        config = router.config
        decisions = router.route_batch([r.text for r in rows])
        planned = 0
        for row, decision in zip(rows, decisions, strict=True):
            if decision.cascade is None or row.expected_difficulty is None:
                continue
            planned += 1
            needed = config.tiers.index(config.tier_for(row.expected_difficulty))
            good = config.tiers.index(decision.tier) >= needed
            # The check catches half of the answers that were too weak; kept answers are
            # judged by their own feedback, escalated ones by the stronger model's.
            answer = "I am not sure." if not good and planned % 2 else "Here is how."
            verdict = router.escalate(answer, decision_id=decision.id)
            if verdict.to_model is None:
                router.feedback(decision.id, 1.0 if good else 0.0, source="judge")
            else:
                router.feedback(decision.id, 1.0, source="judge", model=verdict.to_model)
    assert planned >= 5
    # no checked plan yet in another log: a one-line error
    assert main([*argv, "--url", str(unchecked)], encoder=fake_encoder) == 1
    assert "no cascade plan" in capsys.readouterr().err
    assert main([*argv, "--json", "--write"], encoder=fake_encoder) == 0
    result = json.loads(capsys.readouterr().out)
    swept = {p["cascade_margin"] for p in result["points"]}
    assert None in swept and len(swept) > 3
    assert {p["min_similarity"] for p in result["points"]} == {config.thresholds.min_similarity}
    chosen = result["chosen"]
    assert chosen is not None and chosen["quality"] >= result["min_quality"]
    written = yaml.safe_load((shipped / "router.yaml").read_text())["thresholds"]
    assert (written["margin"], written["cascade_margin"]) == (
        chosen["margin"],
        chosen["cascade_margin"],
    )


def test_learn_cascade_needs_the_log(tiny_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    labelled = tiny_dir / "l.jsonl"
    labelled.write_text('{"text": "hi", "intent": "hours"}\n')
    argv = ["tune", "--intents", str(tiny_dir), "--labelled", str(labelled), "--learn-cascade"]
    assert main(argv, encoder=HashingEncoder()) == 1
    assert "--learn-cascade needs --log" in capsys.readouterr().err
