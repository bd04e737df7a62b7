"""Offline threshold tuning: pure sweep and choice, writing router.yaml, and the CLI."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from modeltriage import ConfigError, RouteOptions, Router, load_intents
from modeltriage.cli.main import main
from modeltriage.core.decision import Neighbour
from modeltriage.core.intents import load_router_config
from modeltriage.learn.splits import seeded_split
from modeltriage.learn.tuning import (
    Case,
    Point,
    QualityModel,
    cases_from_routes,
    choose,
    evaluate_point,
    sweep,
    tune,
)
from modeltriage.learn.tuning_save import write_thresholds

from .conftest import REPO


def point(savings: float, quality: float, margin: float | None = 0.1) -> Point:
    return Point(margin, 0.3, 1 - savings, savings, quality, 0.0, {}, 0.0)


@pytest.mark.parametrize(
    ("points", "min_quality", "expected"),
    [
        ([point(0.9, 0.90), point(0.7, 0.98), point(0.5, 0.99)], 0.98, 1),
        ([point(0.9, 0.90), point(0.7, 0.98), point(0.5, 0.99)], 0.985, 2),
        ([point(0.9, 0.90), point(0.7, 0.98)], 0.999, None),
        # equal savings: the better quality wins, then the first listed
        ([point(0.7, 0.98), point(0.7, 0.99)], 0.9, 1),
        ([point(0.7, 0.99, 0.1), point(0.7, 0.99, 0.2)], 0.9, 0),
    ],
)
def test_choose(points: list[Point], min_quality: float, expected: int | None) -> None:
    chosen = choose(points, min_quality)
    assert chosen is (None if expected is None else points[expected])


def test_split_is_seeded_and_complete() -> None:
    cases = [Case((), i) for i in range(10)]
    a, b = seeded_split(cases, 0.3, seed=1)
    assert (len(a), len(b)) == (7, 3)
    assert sorted(c.input_tokens for c in a + b) == list(range(10))
    assert seeded_split(cases, 0.3, seed=1) == (a, b)
    assert seeded_split(cases, 0.3, seed=2) != (a, b)


def n(intent: str, sim: float, difficulty: str = "easy") -> Neighbour:
    return Neighbour(intent=intent, text=intent, difficulty=difficulty, similarity=sim)  # type: ignore[arg-type]


def test_quality_model_judges_by_required_tier(tiny_dir: Path) -> None:
    intent_set = load_intents(tiny_dir)
    intents = {i.name: i for i in intent_set.intents}
    model = QualityModel(intent_set.config, intents)
    close_call = (n("hours", 0.80), n("refund", 0.79, "moderate"))
    hard_refund = Case(close_call, 10, expected_intent="refund", expected_difficulty="hard")
    refund = Case(close_call, 10, expected_intent="refund")
    out_of_scope = Case((n("hours", 0.3),), 10, expected_intent="")
    measured = Case(close_call, 10, measured={"small-a": 0.4})
    config = intent_set.config
    # margin off: the close call goes to hours (small), too weak for a refund (mid)
    loose = evaluate_point([refund], config, intents, model, None, None)
    assert loose.quality == 0.0 and loose.tier_share["small"] == 1.0
    # margin on: cascaded to the flagship, strong enough for anything
    strict = evaluate_point([refund, hard_refund], config, intents, model, 0.05, None)
    assert strict.quality == 1.0 and strict.cascade_rate == 1.0
    assert evaluate_point([out_of_scope], config, intents, model, None, 0.5).quality == 1.0
    assert evaluate_point([out_of_scope], config, intents, model, None, None).quality == 0.0
    got = evaluate_point([measured], config, intents, model, None, None)
    assert (got.quality, got.measured_share) == (0.4, 1.0)


def test_cascade_plans_count_as_escalated(tiny_dir: Path) -> None:
    intent_set = load_intents(tiny_dir)
    intents = {i.name: i for i in intent_set.intents}
    base = intent_set.config
    config = base.model_copy(
        update={"thresholds": base.thresholds.model_copy(update={"cascade_margin": 0.5})}
    )
    model = QualityModel(config, intents)
    # hours wins by 0.1 (max aggregation): above margin 0.05, below cascade_margin 0.5
    moderate = Case((n("hours", 0.9), n("refund", 0.8, "moderate")), 10, expected_intent="refund")
    planned = evaluate_point([moderate], config, intents, model, 0.05, None)
    unplanned = evaluate_point([moderate], base, intents, model, 0.05, None)
    # with the plan: the flagship answers (good enough for a refund) and both are paid
    assert (planned.quality, planned.tier_share["flagship"]) == (1.0, 1.0)
    assert (unplanned.quality, unplanned.tier_share["small"]) == (0.0, 1.0)
    small, flagship = config.model("small-a"), config.model("big-a")
    expected = sum(
        (10 * m.input_usd_per_mtok + 300 * m.output_usd_per_mtok) / 1e6 for m in (small, flagship)
    )
    assert planned.cost_usd == pytest.approx(expected)
    # the sweep never proposes a margin the router would refuse next to cascade_margin
    points = sweep([moderate], config, intents, model, margins=[0.1, 0.5, 0.7, None])
    assert sorted({p.margin for p in points}, key=str) == [0.1, None]


def test_tune_on_fake_routes(fake_router: Router) -> None:
    texts = ["when do you open on sunday", "refund my purchase please", "zzz qqq vvv"] * 10
    labels = ["hours", "refund", None] * 10
    decisions = fake_router.route_batch(texts, RouteOptions(explain=True))
    config = fake_router.config
    cases = cases_from_routes(texts, [d.neighbours for d in decisions], config, labels=labels)
    intents = {i.name: i for i in fake_router.intent_set.intents}
    result = tune(cases, config, intents, QualityModel(config, intents), floor=0.98, seed=3)
    assert result.tune_cases == 21 and result.held_out_cases == 9
    assert result.chosen is not None and result.chosen.quality >= 0.98
    again = tune(cases, config, intents, QualityModel(config, intents), floor=0.98, seed=3)
    assert again.chosen == result.chosen
    with pytest.raises(ValueError, match="floor"):
        tune(cases, config, intents, QualityModel(config, intents), floor=1.5)


def test_write_thresholds_keeps_comments_and_a_backup(tmp_path: Path) -> None:
    shipped = (REPO / "intents" / "router.yaml").read_text()
    path = tmp_path / "router.yaml"
    path.write_text(shipped)
    backup = write_thresholds(path, 0.075, None)
    assert backup.read_text() == shipped
    config = load_router_config(path)
    assert (config.thresholds.margin, config.thresholds.min_similarity) == (0.075, None)
    updated = path.read_text()
    assert "# Below `margin` (best - runner-up share of the vote)" in updated
    assert len(updated.splitlines()) == len(shipped.splitlines())


def test_write_thresholds_adds_a_missing_section(tmp_path: Path) -> None:
    path = tmp_path / "router.yaml"
    path.write_text(
        "tiers: [s]\nmodels:\n  - {name: a, tier: s, input_usd_per_mtok: 1, output_usd_per_mtok: 1}\n"
    )
    write_thresholds(path, 0.02, 0.5)
    config = load_router_config(path)
    assert (config.thresholds.margin, config.thresholds.min_similarity) == (0.02, 0.5)


def test_write_thresholds_refuses_to_break_the_config(tmp_path: Path) -> None:
    path = tmp_path / "router.yaml"
    original = "tiers: [s]\nmodels:\n  - {name: a, tier: s, input_usd_per_mtok: 1, output_usd_per_mtok: 1}\nthresholds:\n  margin: 0.1\n"
    path.write_text(original)
    with pytest.raises(ConfigError):
        write_thresholds(path, -1.0, 0.5)
    assert path.read_text() == original
    assert list(tmp_path.iterdir()) == [path]


@pytest.mark.real
def test_tune_cli_writes_router_yaml(
    shipped_copy: Path, shipped_router: Router, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import shutil

    intents = tmp_path / "intents"
    shutil.copytree(shipped_copy, intents)
    traffic = REPO / "examples" / "traffic" / "support_day.jsonl"
    png = tmp_path / "curve.png"
    argv = ["tune", "--intents", str(intents), "--labelled", str(traffic), "--plot", str(png)]
    assert main([*argv, "--write", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    chosen = result["chosen"]
    assert chosen["quality"] >= 0.98 * result["flagship_quality"]
    assert png.stat().st_size > 10_000 and png.read_bytes()[:4] == b"\x89PNG"
    thresholds = load_router_config(intents / "router.yaml").thresholds
    assert (thresholds.margin, thresholds.min_similarity) == (
        chosen["margin"],
        chosen["min_similarity"],
    )
    assert list(intents.glob("router.yaml.bak-*"))
    # the same seed gives the same choice
    assert main([*argv[:-2], "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["chosen"] == chosen


def test_tune_cli_needs_a_source(tiny_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["tune", "--intents", str(tiny_dir)]) == 1
    assert "tune needs one source" in capsys.readouterr().err
