"""`tune --log` on a large log: a seeded uniform sample drawn in the database, on SQLite
and (with MODELTRIAGE_TEST_POSTGRES_URL) PostgreSQL, and the memory store."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from modeltriage import HashingEncoder, Router, load_intents
from modeltriage.cli.main import main
from modeltriage.learn.tuning_cases import log_cases, sampled_log_cases
from modeltriage.log.entries import LogEntry
from modeltriage.log.memory import MemoryStore
from modeltriage.log.open import open_store
from modeltriage.log.sample import sample_log
from modeltriage.log.store import LogStore

from .test_decisionlog import postgres_url  # noqa: F401  (a fixture)
from .test_log_aggregate import _entries, _fill


@pytest.fixture(params=["sqlite", "postgres", "memory"])
def filled(request: pytest.FixtureRequest, tmp_path: Path) -> tuple[LogStore, list[LogEntry]]:
    if request.param == "memory":
        opened: LogStore = MemoryStore()
    else:
        url = (
            str(tmp_path / "log.db")
            if request.param == "sqlite"
            else request.getfixturevalue("postgres_url")
        )
        opened = open_store(url)
    request.addfinalizer(opened.close)
    return opened, _fill(opened)


def _model_feedback(store: LogStore) -> dict[str, tuple[int, float]]:
    """The whole log's feedback per model, row by row (decisions with a text only)."""
    by_id = {e.decision_id: e for e in store.decisions() if e.text is not None}
    out: dict[str, tuple[int, float]] = {}
    for fb in store.feedback():
        if fb.decision_id in by_id:
            model = fb.model or by_id[fb.decision_id].model
            n, q = out.get(model, (0, 0.0))
            out[model] = (n + 1, q + fb.quality)
    return out


def test_a_sample_is_seeded_uniform_and_keeps_the_whole_logs_feedback_means(
    filled: tuple[LogStore, list[LogEntry]],
) -> None:
    store, entries = filled
    with_text = [e for e in entries if e.text is not None]
    sample = sample_log(store, 10, seed=3)
    assert sample.sampled and sample.with_text == len(with_text) and sample.total == 40
    ids = [e.decision_id for e in sample.entries]
    assert len(set(ids)) == 10 and all(e.text is not None for e in sample.entries)
    assert ids == [e.decision_id for e in sample_log(store, 10, seed=3).entries]
    assert ids != [e.decision_id for e in sample_log(store, 10, seed=4).entries]
    # Newest first, as store.decisions() orders them.
    times = [e.created_at for e in sample.entries]
    assert times == sorted(times, reverse=True)
    assert {f.decision_id for f in sample.feedback} <= set(ids)
    want = [f for f in store.feedback() if f.decision_id in set(ids)]
    assert sorted(f.decision_id for f in sample.feedback) == sorted(f.decision_id for f in want)
    assert sample.model_feedback is not None
    got = sample.model_feedback
    expected = _model_feedback(store)
    assert got.keys() == expected.keys()
    for model, (n, q) in expected.items():
        assert got[model][0] == n and got[model][1] == pytest.approx(q)


def test_every_row_is_drawn_alike(filled: tuple[LogStore, list[LogEntry]]) -> None:
    store, entries = filled
    counts: dict[str, int] = {}
    for seed in range(200):
        for e in sample_log(store, 5, seed=seed).entries:
            counts[e.decision_id] = counts.get(e.decision_id, 0) + 1
    with_text = [e for e in entries if e.text is not None]
    assert len(counts) == len(with_text)  # every row can be drawn
    expected = 200 * 5 / len(with_text)
    assert all(0.4 * expected < c < 1.8 * expected for c in counts.values()), counts


def test_a_log_no_larger_than_the_sample_is_used_whole(
    filled: tuple[LogStore, list[LogEntry]],
) -> None:
    store, _ = filled
    sample = sample_log(store, 1000)
    assert not sample.sampled and sample.model_feedback is None
    assert sample.entries == store.decisions()
    assert sample.feedback == store.feedback()
    with pytest.raises(ValueError, match="at least 1"):
        sample_log(store, 0)


def test_tune_cases_from_a_sample(tiny_dir: Path, tmp_path: Path) -> None:
    router = Router.in_memory(load_intents(tiny_dir), HashingEncoder(), exact_numpy=True)
    store = open_store(str(tmp_path / "log.db"))
    try:
        _fill(store)
        whole = sample_log(store, 1000)
        found = sampled_log_cases(router, whole, store.url)
        plain = log_cases(router, store.decisions(), store.feedback(), store.url, log=False)
        assert found.cases == plain.cases and found.source == plain.source
        part = sampled_log_cases(router, sample_log(store, 8, seed=1), store.url)
    finally:
        store.close()
    assert len(part.cases) == 8
    assert "a random sample of 8 of 35 logged requests" in part.source
    # Tier means come from the whole log, not from the sample's few feedback rows.
    assert part.quality.tier_quality == pytest.approx(found.quality.tier_quality)


def test_tune_log_sample_flag(
    tiny_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    url = str(tmp_path / "log.db")
    store = open_store(url)
    try:
        store.write_decisions(_entries())
    finally:
        store.close()
    args = ["tune", "--intents", str(tiny_dir), "--log", "--url", url, "--json"]
    assert main([*args, "--sample", "12"], encoder=HashingEncoder()) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["tune_cases"] + result["held_out_cases"] == 12
    for bad in ("0", "-5"):
        assert main([*args, "--sample", bad], encoder=HashingEncoder()) == 1
        assert "--sample must be at least 1" in capsys.readouterr().err


@pytest.mark.real
def test_tune_log_sample_through_the_real_encoder(
    shipped_router: Router,
    shipped_copy: Path,
    real_encoder: object,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    # A real log of the sample traffic (the shipped intents, MiniLM, the saved FAISS
    # index), with feedback on some of it; `tune --log --sample` re-routes only the sample.
    traffic = Path(__file__).resolve().parent.parent / "examples" / "traffic"
    rows = [json.loads(line) for line in (traffic / "support_day.jsonl").open()][:60]
    url = str(tmp_path / "log.sqlite3")
    with Router.load(shipped_copy, encoder=real_encoder, log=url) as router:  # type: ignore[arg-type]
        for i, row in enumerate(rows):
            decision = router.route(row["text"])
            if i % 3 == 0:
                router.feedback(decision.id, 1.0 if decision.intent else 0.5)
    args = ["tune", "--intents", str(shipped_copy), "--log", "--url", url, "--json"]
    assert main([*args, "--sample", "25"], encoder=real_encoder) == 0  # type: ignore[arg-type]
    result = json.loads(capsys.readouterr().out)
    assert result["tune_cases"] + result["held_out_cases"] == 25
    assert 0 < result["measured_share"] <= 1
