"""`modeltriage simulate`: daily spend of a traffic mix, routed versus all-flagship."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest

from modeltriage import ConfigError, HashingEncoder, Router, load_intents
from modeltriage.cli.main import main
from modeltriage.learn.simulation import TrafficRow, read_traffic, simulate

from .conftest import REPO, ROUTER_YAML, TINY_INTENTS


def test_simulate_scales_the_sample(fake_router: Router) -> None:
    rows = [
        TrafficRow("what are your opening hours", "hours", "easy"),
        TrafficRow("what time do you close today", "hours", "easy"),
        TrafficRow("my python script throws a KeyError traceback", "code", "hard"),
        TrafficRow("refund my purchase please", "refund", "moderate"),
    ]
    decisions = fake_router.route_batch([r.text for r in rows])
    report = simulate(rows, decisions, fake_router.config, requests_per_day=1000)
    flagship = fake_router.config.model("big-a")
    per_request = [
        (len(r.text) // 4 + (len(r.text) % 4 > 0)) * flagship.input_usd_per_mtok / 1e6
        + 300 * flagship.output_usd_per_mtok / 1e6
        for r in rows
    ]
    assert report.flagship_daily_cost_usd == pytest.approx(sum(per_request) * 250)
    assert report.daily_cost_usd == pytest.approx(
        sum(d.estimated_cost_usd for d in decisions) * 250
    )
    assert 0 < report.savings_share < 1
    assert sum(report.tier_share.values()) == pytest.approx(1.0)
    assert report.intent_agreement == 1.0
    # the coding question went to the specialised mid-tier model: weaker than "hard"
    assert report.under_routed == pytest.approx(0.25)


def test_simulate_needs_one_decision_per_row(fake_router: Router) -> None:
    with pytest.raises(ValueError, match="one decision per traffic row"):
        simulate([TrafficRow("a")], [], fake_router.config, 10)


def test_bad_traffic_file_names_the_line(tmp_path: Path) -> None:
    path = tmp_path / "t.jsonl"
    path.write_text('{"text": "ok"}\n{"txt": "no"}\n')
    with pytest.raises(ConfigError, match=r"t\.jsonl:2: expected an object"):
        read_traffic(path)
    path.write_text('{"text": "ok", "expected_difficulty": "tricky"}\n')
    with pytest.raises(ConfigError, match=r"t\.jsonl:1: expected_difficulty"):
        read_traffic(path)
    path.write_text('{"text": "ok"}\n\n{not json\n')
    with pytest.raises(ConfigError, match=r"t\.jsonl:3: invalid JSON"):
        read_traffic(path)
    path.write_text("\n")
    with pytest.raises(ConfigError, match="traffic file has no requests"):
        read_traffic(path)
    with pytest.raises(ConfigError, match=r"missing\.jsonl: cannot read traffic file"):
        read_traffic(tmp_path / "missing.jsonl")


def test_shipped_traffic_sample_is_valid() -> None:
    rows = read_traffic(REPO / "examples" / "traffic" / "support_day.jsonl")
    assert len(rows) >= 300
    assert sum(r.expected_difficulty == "easy" for r in rows) / len(rows) > 0.7


@pytest.mark.real
def test_simulate_cli_on_the_shipped_intents(
    shipped_copy: Path, shipped_router: Router, capsys: pytest.CaptureFixture[str]
) -> None:
    traffic = REPO / "examples" / "traffic" / "support_day.jsonl"
    argv = ["simulate", "--intents", str(shipped_copy), "--traffic", str(traffic), "--json"]
    assert main(argv) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["requests_per_day"] == 100_000 and report["sample_size"] >= 300
    # The seed's worked example: routing the easy majority saves most of the spend.
    assert report["savings_share"] > 0.6
    assert report["tier_share"]["small"] > 0.5


def test_cascade_plans_are_costed_between_two_bounds(make_intents: Callable[..., Path]) -> None:
    directory = make_intents(
        TINY_INTENTS, ROUTER_YAML.replace("margin: 0.02", "margin: 0.02\n  cascade_margin: 0.99")
    )
    router = Router.in_memory(load_intents(directory), HashingEncoder(), exact_numpy=True)
    rows = [
        TrafficRow("when do you open on sunday?", "hours", "easy"),
        TrafficRow("what are your opening hours", "hours", "easy"),
        TrafficRow("I want my money back for this damaged item", "refund", "hard"),
    ]
    decisions = router.route_batch([r.text for r in rows])
    planned = [d for d in decisions if d.cascade is not None]
    assert planned, [d.reason for d in decisions]
    first = sum(d.estimated_cost_usd for d in decisions)
    extra = sum(d.cascade.estimated_cost_usd for d in planned)  # type: ignore[union-attr]
    full = simulate(rows, decisions, router.config, 300)
    half = simulate(rows, decisions, router.config, 300, escalation_rate=0.5)
    assert full.planned_rate == pytest.approx(len(planned) / 3)
    assert full.daily_cost_usd == pytest.approx((first + extra) * 100)
    assert half.daily_cost_usd == pytest.approx((first + extra / 2) * 100)
    assert full.daily_cost_no_escalation_usd == pytest.approx(first * 100)
    assert full.daily_cost_all_escalate_usd == pytest.approx((first + extra) * 100)
    # the refund labelled hard went to mid: under-routed, but with a plan to the flagship
    assert full.under_routed_without_plan is not None and full.under_routed is not None
    assert full.under_routed_without_plan < full.under_routed
    with pytest.raises(ValueError, match="escalation_rate"):
        simulate(rows, decisions, router.config, 300, escalation_rate=1.5)


def test_simulate_cli_refuses_a_bad_escalation_rate(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["simulate", "--escalation-rate", "2"]) == 1
    assert "--escalation-rate must be from 0 to 1" in capsys.readouterr().err


def test_simulate_takes_the_escalation_rate_from_the_log(
    make_intents: Callable[..., Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import dataclasses

    from modeltriage.log.entries import EventEntry
    from modeltriage.log.open import open_store

    from .test_logs_cli import entry

    yaml = ROUTER_YAML.replace("margin: 0.02", "margin: 0.02\n  cascade_margin: 0.99")
    directory = make_intents(TINY_INTENTS, yaml + "log:\n  url: .log/d.sqlite3\n")
    traffic = tmp_path / "traffic.jsonl"
    traffic.write_text('{"text": "when do you open on sunday?"}\n')
    argv = ["simulate", "--intents", str(directory), "--traffic", str(traffic)]
    fake = HashingEncoder()
    assert main([*argv, "--escalation-rate", "log"], encoder=fake) == 1
    assert "no cascade plan in the log has had its answer checked" in capsys.readouterr().err

    store = open_store(f"sqlite://{directory / '.log' / 'd.sqlite3'}")
    planned = [
        dataclasses.replace(entry(n, "small", "small-a", 0.001), cascade_to="big-a")
        for n in range(4)
    ]
    store.write_decisions(planned)
    store.write_events(
        [
            EventEntry("escalation", "small-a", "big-a", "escalate: hedge", "d0"),
            EventEntry("escalation", "small-a", None, "keep the answer", "d1"),
            EventEntry("escalation", "small-a", None, "keep the answer", "d2"),
            EventEntry("escalation", "small-a", None, "keep the answer", "d3"),
        ]
    )
    store.close()
    assert main([*argv, "--escalation-rate", "log", "--json"], encoder=fake) == 0
    captured = capsys.readouterr()
    assert "1 of 4 checked plans escalated (25.0%)" in captured.err
    assert json.loads(captured.out)["escalation_rate"] == 0.25
