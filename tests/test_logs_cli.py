"""`modeltriage logs` and `modeltriage tune --log` over a real SQLite decision log."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from modeltriage import HashingEncoder, RouteOptions, Router, load_intents
from modeltriage.cli.main import main
from modeltriage.learn.simulation import read_traffic
from modeltriage.log.entries import FeedbackEntry, LogEntry
from modeltriage.log.report import checked_plans, format_summary, summarise

from .conftest import REPO
from .test_cli import copy_shipped


def entry(
    n: int, tier: str, model: str, cost: float, tokens: int | None = 10, text: str | None = "hi"
) -> LogEntry:
    return LogEntry(
        decision_id=f"d{n}",
        created_at=datetime(2026, 1, 1, tzinfo=timezone.utc) + timedelta(minutes=n),
        text=text,
        text_sha256="0" * 64,
        intent="hours",
        runner_up=None,
        difficulty="easy",
        tier=tier,
        model=model,
        confidence=0.9,
        margin=0.5,
        cascaded=tier == "flagship",
        reason="low_margin" if tier == "flagship" else "confident",
        estimated_cost_usd=cost,
        latency_ms=5.0,
        index_version="v",
        input_tokens=tokens,
    )


def test_summarise(tiny_dir: Path) -> None:
    config = load_intents(tiny_dir).config
    entries = [
        entry(1, "small", "small-a", 0.001),
        entry(2, "flagship", "big-a", 0.02),
        entry(3, "small", "small-a", 0.001, tokens=None, text=None),
    ]
    feedback = [
        FeedbackEntry("d1", 0.5, "user"),
        FeedbackEntry("d1", 1.0, "judge"),
        FeedbackEntry("d2", 1.0, "user"),
        FeedbackEntry("other", 0.0, "user"),
    ]
    s = summarise(entries, feedback, config)
    assert s.requests == 3 and s.tier_share == {"small": 2 / 3, "flagship": 1 / 3}
    assert s.spend_usd == pytest.approx(0.022)
    # the hash-only row without a token estimate cannot be compared
    assert s.compared_requests == 2
    flagship = (10 * 15.0 + 300 * 60.0) / 1e6
    assert s.flagship_spend_usd == pytest.approx(2 * flagship)
    assert s.savings_share == pytest.approx(1 - 0.021 / (2 * flagship))
    assert (s.feedback_rows, s.feedback_coverage) == (3, pytest.approx(2 / 3))
    assert s.mean_quality_by_tier == {"flagship": 1.0, "small": 0.75}
    assert "3 decisions" in format_summary(s)
    assert format_summary(summarise([], [], config)) == "no decisions logged"


def test_summarise_counts_checks_and_failovers(tiny_dir: Path) -> None:
    import dataclasses

    from modeltriage.log.entries import EventEntry

    config = load_intents(tiny_dir).config
    planned = dataclasses.replace(entry(1, "small", "small-a", 0.001), cascade_to="big-a")
    entries = [planned, entry(2, "small", "small-a", 0.001), entry(3, "mid", "mid-a", 0.01)]
    events = [
        EventEntry("escalation", "small-a", "big-a", "escalate: hedge (...)", "d1"),
        EventEntry("escalation", "small-a", None, "keep the answer: no signal fired", "d2"),
        EventEntry("failover", "mid-a", "big-a", "failed: mid-a; next", "d3"),
        EventEntry("failover", "big-a", None, "failed: big-a; no model left", "d3"),
        EventEntry("failover", "small-a", "small-b", "another replica's", "elsewhere"),
    ]
    s = summarise(entries, [], config, events)
    assert (s.planned, s.planned_checked, s.planned_escalated) == (1, 1, 1)
    assert (s.answer_checks, s.escalations) == (2, 1)
    assert (s.failovers, s.failovers_exhausted) == (2, 1)
    text = format_summary(s)
    assert "cascade plans: 1 decisions, 1 answers checked, 1 escalated" in text
    assert "failovers: 2 (1 with no model left)" in text
    plans = checked_plans(entries, events, config)
    assert (plans.checked, plans.escalated, plans.escalation_rate) == (1, 1, 1.0)
    assert checked_plans(entries, [], config).escalation_rate is None


def test_logs_and_tune_from_the_log(
    tmp_path: Path,
    fake_encoder: HashingEncoder,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    shipped_copy = copy_shipped(tmp_path)
    db = tmp_path / "decisions.sqlite3"
    monkeypatch.setenv("MODELTRIAGE_LOG_URL", str(db))
    rows = read_traffic(REPO / "examples" / "traffic" / "support_day.jsonl")[:150]
    with Router.load(shipped_copy, encoder=fake_encoder, build_if_needed=True) as router:
        config = router.config
        decisions = router.route_batch(
            [r.text for r in rows], RouteOptions(metadata={"tenant": "t"})
        )
        # A judge's verdict: good when the tier is strong enough for the labelled difficulty.
        for row, decision in zip(rows, decisions, strict=True):
            if row.expected_difficulty is None:
                continue
            needed = config.tiers.index(config.tier_for(row.expected_difficulty))
            good = config.tiers.index(decision.tier) >= needed
            router.feedback(decision.id, 1.0 if good else 0.0, source="judge")

    assert main(["logs", "--intents", str(shipped_copy), "--limit", "5"]) == 0
    out = capsys.readouterr().out
    assert "150 decisions" in out and "savings" in out and "most recent 5" in out

    assert main(["logs", "--intents", str(shipped_copy), "--json", "--since", "1h"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["summary"]["requests"] == 150 and len(report["recent"]) == 20
    assert report["summary"]["feedback_coverage"] > 0.9
    assert report["recent"][0]["metadata"] == {"tenant": "t"}

    assert main(["logs", "--intents", str(shipped_copy), "--since", "yesterday"]) == 1
    assert "--since" in capsys.readouterr().err

    png = tmp_path / "log-curve.png"
    argv = ["tune", "--intents", str(shipped_copy), "--log", "--plot", str(png), "--json"]
    assert main(argv, encoder=fake_encoder) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["tune_cases"] + result["held_out_cases"] == 150
    assert result["measured_share"] > 0
    assert png.exists()


def test_logs_without_a_log(
    tiny_dir: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("MODELTRIAGE_LOG_URL", raising=False)
    assert main(["logs", "--intents", str(tiny_dir)]) == 1
    assert "decision logging is off" in capsys.readouterr().err
