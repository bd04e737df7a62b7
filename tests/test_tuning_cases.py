"""modeltriage.learn.tuning_cases: the three sources `modeltriage tune` sweeps."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from modeltriage import HashingEncoder, InputError, Router, load_intents
from modeltriage.learn.tuning_cases import labelled_cases, log_cases, outcomes_cases
from modeltriage.log.entries import FeedbackEntry

from .conftest import ROUTER_YAML, TINY_INTENTS, write_intents
from .test_logs_cli import entry


def test_labelled_cases(fake_router: Router, tmp_path: Path) -> None:
    path = tmp_path / "labelled.jsonl"
    rows = [
        {"text": "when do you open on sunday", "intent": "hours"},
        {"text": "zzz qqq", "intent": None},
    ]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    found = labelled_cases(fake_router, path)
    assert [c.expected_intent for c in found.cases] == ["hours", ""]
    assert found.source.startswith("quality is estimated from labels")
    assert found.confidences == (None,)
    path.write_text(json.dumps({"text": "hi", "intent": "nope"}) + "\n")
    with pytest.raises(InputError, match=r"labels name intents this router lacks: \['nope'\]"):
        labelled_cases(fake_router, path)


def test_outcomes_cases_need_every_router_model(fake_router: Router, tmp_path: Path) -> None:
    path = tmp_path / "x.outcomes.jsonl"
    everyone = {m.name: {"quality": 1.0, "cost_usd": 0.001} for m in fake_router.config.models}
    rows = [
        {"text": "when do you open on sunday", "outcomes": everyone},
        {"text": "refund my purchase please", "outcomes": {"small-a": everyone["small-a"]}},
    ]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    found = outcomes_cases(fake_router, path)
    assert len(found.cases) == 1 and len(found.confidences) > 1
    assert found.source.startswith("1 prompts with outcomes for every router model (1 skipped)")
    path.write_text(json.dumps(rows[1]) + "\n")
    with pytest.raises(InputError, match="no outcomes for the router's models"):
        outcomes_cases(fake_router, path)


def test_log_cases_skip_hash_only_rows_and_note_cascade_plans(tmp_path: Path) -> None:
    yaml = ROUTER_YAML.replace("margin: 0.02", "margin: 0.02\n  cascade_margin: 0.5")
    intent_set = load_intents(write_intents(tmp_path / "intents", TINY_INTENTS, yaml))
    router = Router.in_memory(intent_set, HashingEncoder(), exact_numpy=True)
    entries = [entry(1, "small", "small-a", 0.001), entry(2, "small", "small-a", 0.001, text=None)]
    found = log_cases(router, entries, [FeedbackEntry("d1", 1.0, "user")], "log.sqlite3")
    assert len(found.cases) == 1
    assert found.source.startswith("1 logged requests (1 stored as a hash only, skipped)")
    assert found.source.endswith("both calls paid, the plan's model answers")
    with pytest.raises(InputError, match=r"no logged decision with its text in log\.sqlite3"):
        log_cases(router, entries[1:], [], "log.sqlite3")
