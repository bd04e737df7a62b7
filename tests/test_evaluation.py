"""Labelled-data evaluation: table tests of the pure metrics, the orchestration on a slice
of CLINC150 (fake encoder, and once through the real one), and the ``eval intents``
handler called with parsed arguments."""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import get_args

import numpy as np
import pytest
import yaml

from modeltriage import HashingEncoder, Router, SentenceTransformerEncoder
from modeltriage.cli.eval import AGGREGATIONS, add_eval_parser, run_eval, run_eval_intents
from modeltriage.core.config import Aggregation, RouterConfig
from modeltriage.core.costs import flagship_cost_usd
from modeltriage.core.decision import Verdict
from modeltriage.core.encoders import Vectors
from modeltriage.errors import ConfigError, EvaluationError, InputError, ModelTriageError
from modeltriage.learn.datasets import (
    LabelledText,
    intent_name_for,
    intent_set_from_labelled,
    read_intents_jsonl,
)
from modeltriage.learn.embedding_cache import CachingEncoder, progress_bar
from modeltriage.learn.eval_intents import (
    IntentEvalRun,
    check_options,
    check_routable,
    check_test,
    check_training,
    is_intent_name,
    load_config_dir,
    run_intent_eval,
)
from modeltriage.learn.eval_report import format_report
from modeltriage.learn.evaluation import EvalOptions, evaluate_intents, first_refused, with_policy
from modeltriage.learn.intent_metrics import (
    Confusion,
    Label,
    confusion_counts,
    cost_summary,
    in_scope_accuracy,
    macro_f1,
    oos_precision,
    oos_recall,
    overall_accuracy,
    per_intent_stats,
    score,
    worst_confusions,
)
from modeltriage.learn.min_similarity import (
    MIN_SIMILARITY_GRID,
    apply_min_similarity,
    choose_min_similarity,
)
from modeltriage.learn.splits import split_by_intent

from .conftest import ROUTER_YAML, SHIPPED_INTENTS

FIXTURE = Path(__file__).resolve().parent / "fixtures" / "clinc_small"
TRAIN = FIXTURE / "train.intents.jsonl"
TEST = FIXTURE / "test.intents.jsonl"

A, B, C = "a", "b", "c"
OOS = None
QUIET = EvalOptions(progress=False)
TUNED = EvalOptions(tune_min_similarity=True, progress=False)


@pytest.fixture(scope="module")
def config() -> RouterConfig:
    return RouterConfig.model_validate(yaml.safe_load(ROUTER_YAML))


@pytest.fixture(scope="module")
def shipped_config() -> RouterConfig:
    from modeltriage.core.intents import load_router_config

    return load_router_config(SHIPPED_INTENTS / "router.yaml")


@pytest.fixture(scope="module")
def train_rows() -> list[LabelledText]:
    return read_intents_jsonl(TRAIN)


@pytest.fixture(scope="module")
def test_rows() -> list[LabelledText]:
    return read_intents_jsonl(TEST)


# --------------------------------------------------------------------------- metrics

# (gold, predicted, overall, in-scope accuracy, OOS recall, OOS precision)
RATE_CASES: list[
    tuple[list[Label], list[Label], float | None, float | None, float | None, float | None]
] = [
    ([A, B, OOS], [A, B, OOS], 1.0, 1.0, 1.0, 1.0),
    ([A, B, OOS, OOS], [A, A, OOS, A], 0.5, 0.5, 0.5, 1.0),
    # A rejected in-scope row is wrong in scope and lowers OOS precision.
    ([A, B, OOS], [OOS, B, OOS], 2 / 3, 0.5, 1.0, 0.5),
    # No out-of-scope rows: recall undefined; none predicted: precision undefined.
    ([A, B], [A, C], 0.5, 0.5, None, None),
    ([OOS, OOS], [A, OOS], 0.5, None, 0.5, 1.0),
    ([], [], None, None, None, None),
]


@pytest.mark.parametrize(
    ("gold", "predicted", "overall", "in_scope", "recall", "precision"), RATE_CASES
)
def test_rates(
    gold: list[Label],
    predicted: list[Label],
    overall: float | None,
    in_scope: float | None,
    recall: float | None,
    precision: float | None,
) -> None:
    assert overall_accuracy(gold, predicted) == pytest.approx(overall)
    assert in_scope_accuracy(gold, predicted) == pytest.approx(in_scope)
    assert oos_recall(gold, predicted) == pytest.approx(recall)
    assert oos_precision(gold, predicted) == pytest.approx(precision)


def test_length_mismatch_is_an_error() -> None:
    with pytest.raises(ValueError, match="differ in length"):
        overall_accuracy([A], [A, B])
    with pytest.raises(ValueError, match="differ in length"):
        worst_confusions([A], [B], [])


def test_confusion_counts_include_the_diagonal_and_oos() -> None:
    counts = confusion_counts([A, A, B, OOS], [A, B, B, A])
    assert counts == {(A, A): 1, (A, B): 1, (B, B): 1, (OOS, A): 1}


# (gold, predicted, {intent: (support, predicted, correct, precision, recall, f1)})
STATS_CASES: list[
    tuple[list[Label], list[Label], dict[str, tuple[int, int, int, float | None, float, float]]]
] = [
    ([A, A, B, B], [A, A, B, B], {A: (2, 2, 2, 1.0, 1.0, 1.0), B: (2, 2, 2, 1.0, 1.0, 1.0)}),
    # b is never predicted: precision undefined, F1 0.
    ([A, B], [A, A], {A: (1, 2, 1, 0.5, 1.0, 2 / 3), B: (1, 0, 0, None, 0.0, 0.0)}),
    # A prediction on an out-of-scope row is a false positive; a rejection a false negative.
    ([A, A, OOS], [A, OOS, A], {A: (2, 2, 1, 0.5, 0.5, 0.5)}),
    # c is predicted but never gold: not one of the scored intents.
    ([A, A], [A, C], {A: (2, 1, 1, 1.0, 0.5, 2 / 3)}),
]


@pytest.mark.parametrize(("gold", "predicted", "expected"), STATS_CASES)
def test_per_intent_stats(
    gold: list[Label],
    predicted: list[Label],
    expected: dict[str, tuple[int, int, int, float | None, float, float]],
) -> None:
    stats = per_intent_stats(gold, predicted)
    assert [s.intent for s in stats] == sorted(expected)
    for s in stats:
        support, n_pred, correct, precision, recall, f1 = expected[s.intent]
        assert (s.support, s.predicted, s.correct) == (support, n_pred, correct)
        assert s.precision == pytest.approx(precision)
        assert (s.recall, s.f1) == pytest.approx((recall, f1))
    assert macro_f1(stats) == pytest.approx(sum(e[5] for e in expected.values()) / len(expected))


def test_macro_f1_of_nothing_is_undefined() -> None:
    assert macro_f1([]) is None
    assert macro_f1(per_intent_stats([OOS], [OOS])) is None


def test_worst_confusions_rank_by_count_then_name_with_first_example() -> None:
    gold: list[Label] = [A, A, B, B, B, C, OOS, A]
    predicted: list[Label] = [B, OOS, A, A, C, A, A, B]
    texts = ["a1", "a2", "b1", "b2", "b3", "c1", "o1", "a3"]
    assert worst_confusions(gold, predicted, texts) == [
        Confusion(A, B, 2, "a1"),
        Confusion(B, A, 2, "b1"),
        Confusion(B, C, 1, "b3"),
        Confusion(C, A, 1, "c1"),
    ]
    assert worst_confusions(gold, predicted, texts, limit=1) == [Confusion(A, B, 2, "a1")]


def test_score_collects_everything() -> None:
    scores = score([A, B, OOS], [A, A, OOS], ["x", "y", "z"])
    assert (scores.rows, scores.in_scope_rows, scores.out_of_scope_rows) == (3, 2, 1)
    assert scores.in_scope_accuracy == 0.5 and scores.overall_accuracy == pytest.approx(2 / 3)
    assert (scores.oos_recall, scores.oos_precision) == (1.0, 1.0)
    assert scores.macro_f1 == pytest.approx((2 / 3 + 0) / 2)
    assert scores.worst_confusions == (Confusion(B, A, 1, "y"),)


def test_apply_min_similarity_rejects_below_it_only() -> None:
    assert apply_min_similarity([A, B, C], [0.3, 0.5, 0.7], 0.5) == [OOS, B, C]


# (gold, predicted without a threshold, confidences, candidates, chosen)
MIN_SIMILARITY_CASES: list[tuple[list[Label], list[Label], list[float], Sequence[float], float]] = [
    # The out-of-scope row sits lowest: any threshold in (0.2, 0.6] is perfect; middle of
    # the tied grid points 0.3..0.6.
    ([A, B, OOS], [A, B, A], [0.8, 0.6, 0.2], (0.1, 0.3, 0.4, 0.5, 0.6, 0.7), 0.5),
    # No out-of-scope rows: only thresholds rejecting nothing are best.
    ([A, B], [A, B], [0.8, 0.6], (0.0, 0.5, 0.7), 0.5),
    # Rejecting a row the router gets wrong anyway costs nothing: 0.5 and 0.65 tie.
    ([A, B, OOS], [A, C, A], [0.8, 0.6, 0.4], (0.3, 0.5, 0.65, 0.9), 0.65),
]


@pytest.mark.parametrize(
    ("gold", "predicted", "confidences", "candidates", "chosen"), MIN_SIMILARITY_CASES
)
def test_choose_min_similarity(
    gold: list[Label],
    predicted: list[Label],
    confidences: list[float],
    candidates: Sequence[float],
    chosen: float,
) -> None:
    assert choose_min_similarity(gold, predicted, confidences, candidates) == chosen


def test_choose_min_similarity_needs_rows_and_the_default_grid_spans_cosines() -> None:
    with pytest.raises(ValueError):
        choose_min_similarity([], [], [])
    assert (
        MIN_SIMILARITY_GRID[0] == 0.0
        and MIN_SIMILARITY_GRID[-1] == 1.0
        and 0.45 in MIN_SIMILARITY_GRID
    )


def test_split_held_out_per_intent_with_all_oos_held() -> None:
    rows = [LabelledText(f"{i}{n}", i) for i in (A, B) for n in range(10)]
    rows += [LabelledText("x", OOS), LabelledText("solo", C)]
    kept, held = split_by_intent(rows, 0.2, seed=3)
    assert sorted(r.text for r in kept + held) == sorted(r.text for r in rows)
    assert [r.intent for r in held].count(A) == 2 and [r.intent for r in held].count(B) == 2
    assert OOS in [r.intent for r in held] and OOS not in [r.intent for r in kept]
    assert [r.text for r in kept if r.intent == C] == ["solo"]  # never held out entirely
    assert split_by_intent(rows, 0.2, seed=3) == (kept, held)
    assert split_by_intent(rows, 0.2, seed=4) != (kept, held)


def _verdict(tier: str, model: str, cost: float, reason: str, tokens: int = 10) -> Verdict:
    return Verdict(
        intent=None if reason == "no_match" else A,
        runner_up=None,
        difficulty=None if reason == "no_match" else "easy",
        tier=tier,
        model=model,
        fallbacks=[],
        confidence=0.5,
        margin=None if reason == "no_match" else 0.5,
        cascaded=reason in ("no_match", "low_margin"),
        reason=reason,  # type: ignore[arg-type]
        explanation="",
        estimated_cost_usd=cost,
        input_tokens=tokens,
    )


def test_cost_summary_against_always_flagship(config: RouterConfig) -> None:
    # ROUTER_YAML: flagship big-a at $15 in / $60 out per Mtok, 300 output tokens.
    flagship = flagship_cost_usd(config, 10)
    assert flagship == pytest.approx((10 * 15 + 300 * 60) / 1e6)
    verdicts = [
        _verdict("small", "small-a", 0.001, "confident"),
        _verdict("flagship", "big-a", flagship, "no_match"),
    ]
    summary = cost_summary(verdicts, config)
    assert summary.total_usd == pytest.approx(0.001 + flagship)
    assert summary.flagship_total_usd == pytest.approx(2 * flagship)
    assert summary.savings == pytest.approx(1 - (0.001 + flagship) / (2 * flagship))
    assert summary.tier_share == {"flagship": 0.5, "small": 0.5}
    assert summary.reason_share == {"confident": 0.5, "no_match": 0.5}
    assert summary.cascade_rate == 0.5


def test_with_policy_overrides_and_validates(config: RouterConfig) -> None:
    changed = with_policy(config, top_k=1, aggregation="vote", min_similarity=0.3)
    assert (changed.scoring.top_k, changed.scoring.aggregation) == (1, "vote")
    assert changed.thresholds.min_similarity == 0.3
    assert changed.thresholds.margin == config.thresholds.margin
    assert with_policy(config, no_min_similarity=True).thresholds.min_similarity is None
    assert with_policy(config) == config
    with pytest.raises(ValueError):
        with_policy(config, top_k=0)


def test_first_refused_finds_what_the_router_would_refuse() -> None:
    rows = [LabelledText("fine", A), LabelledText("x" * 40, A)]
    assert first_refused(rows, 100) is None
    refused = first_refused(rows, 20)
    assert refused is not None and refused[0] == 1 and "over the limit" in refused[1]


# --------------------------------------------------------------------------- embedding


class CountingEncoder(HashingEncoder):
    def __init__(self) -> None:
        super().__init__()
        self.calls: list[int] = []

    def encode(self, texts: Sequence[str]) -> Vectors:
        self.calls.append(len(texts))
        return super().encode(texts)


def test_caching_encoder_embeds_each_text_once_in_chunks() -> None:
    inner = CountingEncoder()
    cache = CachingEncoder(inner, chunk_size=2, progress=False)
    assert cache.embed(["a", "b", "a", "c"]) == 3
    assert inner.calls == [2, 1]
    vectors = cache.encode(["c", "a", "d"])
    assert inner.calls == [2, 1, 1]
    np.testing.assert_array_equal(vectors, HashingEncoder().encode(["c", "a", "d"]))
    assert cache.encode([]).shape == (0, cache.dim)
    assert (cache.model_id, cache.cached) == (inner.model_id, 4)


def test_progress_bar_falls_back_without_tqdm(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "tqdm", None)  # makes `import tqdm` fail
    bar = progress_bar(10, "x")
    bar.update(10)
    bar.close()
    assert type(bar).__name__ == "_NoBar"


# --------------------------------------------------------------------------- orchestration


def test_evaluate_matches_routers_built_directly(
    shipped_config: RouterConfig, train_rows: list[LabelledText], test_rows: list[LabelledText]
) -> None:
    report = evaluate_intents(train_rows, test_rows, shipped_config, HashingEncoder(), QUIET)
    assert (report.exemplars, report.intents) == (200, 20)
    assert (report.min_similarity, report.min_similarity_source, report.min_similarity_tuning) == (
        0.45,
        "config",
        None,
    )
    texts, gold = [r.text for r in test_rows], [r.intent for r in test_rows]
    for result, policy in (
        (report.router, shipped_config),
        (report.top1, with_policy(shipped_config, top_k=1, aggregation="max")),
    ):
        intent_set = intent_set_from_labelled(train_rows, policy)
        direct = Router.in_memory(intent_set, HashingEncoder()).route_batch(texts)
        assert result.scores == score(gold, [d.intent for d in direct], texts)
        assert result.cost.total_usd == pytest.approx(sum(d.estimated_cost_usd for d in direct))
    assert (report.top1.aggregation, report.top1.top_k) == ("max", 1)
    # Same min_similarity, so both reject the same rows.
    assert report.top1.scores.oos_recall == report.router.scores.oos_recall
    assert report.embedded_texts == len({*texts, *(r.text for r in train_rows if r.intent)})
    table = format_report(report)
    assert "floor 0.450 (from config)" in table and "weakest 10 intents by F1" in table


def test_tuned_min_similarity_never_looks_at_the_test_set(
    shipped_config: RouterConfig, train_rows: list[LabelledText], test_rows: list[LabelledText]
) -> None:
    tuned = evaluate_intents(train_rows, test_rows, shipped_config, HashingEncoder(), TUNED)
    other = evaluate_intents(train_rows, test_rows[:7], shipped_config, HashingEncoder(), TUNED)
    tuning = tuned.min_similarity_tuning
    assert tuning is not None and tuned.min_similarity_source == "tuned"
    assert tuned.min_similarity == tuning.min_similarity == other.min_similarity
    assert tuning.held_out_in_scope == 40  # 2 of each intent's 10
    assert tuning.held_out_out_of_scope == 20
    assert tuning.tuning_exemplars == 160
    assert tuned.exemplars == 200  # the final router has every training row


def test_per_intent_sampling_and_overrides(
    shipped_config: RouterConfig, train_rows: list[LabelledText], test_rows: list[LabelledText]
) -> None:
    report = evaluate_intents(
        train_rows,
        test_rows,
        shipped_config,
        HashingEncoder(),
        EvalOptions(
            per_intent=3,
            seed=1,
            top_k=5,
            aggregation="mean_top2",
            min_similarity=0.2,
            progress=False,
        ),
    )
    assert (report.exemplars, report.per_intent, report.seed) == (60, 3, 1)
    assert (report.router.aggregation, report.router.top_k) == ("mean_top2", 5)
    assert (report.min_similarity, report.min_similarity_source) == (0.2, "--floor")


@pytest.mark.parametrize(
    ("train", "test", "kwargs", "message"),
    [
        ([LabelledText("x", OOS)], [LabelledText("y", OOS)], {}, "no in-scope row"),
        ([LabelledText("x", A)], [], {}, "no rows"),
        (
            [LabelledText("x", A)],
            [LabelledText("y", A)],
            {"tune_min_similarity": True},
            "out-of-scope rows",
        ),
        (
            [LabelledText("x", A)],
            [LabelledText("y", A)],
            {"tune_min_similarity": True, "min_similarity": 0.3},
            "not both",
        ),
        (
            [LabelledText("x", A)],
            [LabelledText("y" * 40_000, A)],
            {},
            "test row 1 cannot be routed",
        ),
    ],
)
def test_evaluate_refuses_what_it_cannot_evaluate(
    shipped_config: RouterConfig,
    train: list[LabelledText],
    test: list[LabelledText],
    kwargs: dict[str, object],
    message: str,
) -> None:
    with pytest.raises(EvaluationError, match=message):
        options = EvalOptions(progress=False, **kwargs)  # type: ignore[arg-type]
        evaluate_intents(train, test, shipped_config, HashingEncoder(), options)


# --------------------------------------------------------------------------- CLI handler


def _args(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="modeltriage")
    add_eval_parser(parser.add_subparsers(dest="command", required=True))
    return parser.parse_args(["eval", "intents", "--intents", str(SHIPPED_INTENTS), *argv])


def _files(*argv: str, train: Path = TRAIN, test: Path = TEST) -> argparse.Namespace:
    return _args("--exemplars", str(train), "--test", str(test), *argv)


def test_run_eval_dispatches_to_the_kind_handler() -> None:
    args = _files()
    assert args.eval_handler is run_eval_intents
    fake = HashingEncoder()
    args.eval_handler = lambda parsed, encoder: 7 if parsed is args and encoder is fake else 0
    assert run_eval(args, fake) == 7


def test_aggregation_choices_follow_the_config_schema() -> None:
    assert set(AGGREGATIONS) == set(get_args(Aggregation))


def test_handler_prints_a_table_and_writes_json(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "report.json"
    # Raw cosines: the fake encoder's confusions this test prints need the adapter off.
    config_dir = tmp_path / "config"
    config_dir.mkdir()
    shipped = (SHIPPED_INTENTS / "router.yaml").read_text(encoding="utf-8")
    assert "adapter:\n  enabled: true\n" in shipped
    raw = shipped.replace("adapter:\n  enabled: true\n", "adapter:\n  enabled: false\n")
    (config_dir / "router.yaml").write_text(raw)
    args = _files(
        "--json", str(out), "--per-intent", "5", "--top-k", "10", "--intents", str(config_dir)
    )
    assert run_eval_intents(args, HashingEncoder()) == 0
    printed = capsys.readouterr()
    assert "| router (vote, top_k 10)" in printed.out and "top-1 nearest neighbour" in printed.out
    assert "always flagship (o1)" in printed.out and "worst confusions" in printed.out
    assert f"report written to {out}" in printed.err
    report = json.loads(out.read_text(encoding="utf-8"))
    assert report["command"] == "eval intents" and report["encoder"] == "hashing-fake-256"
    assert report["exemplars"] == 100 and report["per_intent"] == 5
    assert len(report["router"]["scores"]["per_intent"]) == 20
    assert {
        "in_scope_accuracy",
        "macro_f1",
        "oos_recall",
        "oos_precision",
        "overall_accuracy",
    } <= set(report["top1"]["scores"])
    assert report["router"]["cost"]["flagship_total_usd"] == report["flagship_total_usd"]


def _write(path: Path, lines: Sequence[str]) -> Path:
    path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    return path


ROW_A = '{"text": "hello there", "intent": "a"}'
ROW_OOS = '{"text": "what is love", "intent": null}'


@pytest.mark.parametrize(
    ("train_lines", "test_lines", "extra", "message"),
    [
        ([ROW_A, "", "{not json"], [ROW_A], (), "train.jsonl:3: invalid JSON"),
        ([ROW_OOS], [ROW_A], (), "train.jsonl: no in-scope rows"),
        (
            [ROW_A],
            [ROW_A, '{"text": "y", "intent": "b"}'],
            (),
            "test.jsonl:2: intent 'b' has no training rows",
        ),
        ([ROW_A], [], (), "test.jsonl: no rows to evaluate"),
        (
            [ROW_A],
            [ROW_A, json.dumps({"text": "y" * 40_000, "intent": "a"})],
            (),
            "test.jsonl:2: text is 40000 bytes",
        ),
        ([ROW_A], [ROW_A], ("--tune-floor",), "train.jsonl: --tune-floor needs out-of-scope rows"),
    ],
)
def test_handler_names_file_and_line_of_bad_input(
    tmp_path: Path,
    train_lines: list[str],
    test_lines: list[str],
    extra: tuple[str, ...],
    message: str,
) -> None:
    train = _write(tmp_path / "train.jsonl", train_lines)
    test = _write(tmp_path / "test.jsonl", test_lines)
    with pytest.raises(ConfigError) as info:
        run_eval_intents(_files(*extra, train=train, test=test), HashingEncoder())
    assert str(info.value).startswith(str(tmp_path))
    assert message in str(info.value)


@pytest.mark.parametrize(
    ("extra", "error", "message"),
    [
        (("--per-intent", "0"), InputError, "--per-intent must be at least 1"),
        (("--top-k", "0"), InputError, "--top-k must be between 1 and 1000"),
        (("--floor", "1.5"), InputError, "--floor is a cosine similarity"),
        (("--json", "/nonexistent/dir/r.json"), InputError, "does not exist"),
        (("--intents", "/nonexistent/intents"), ConfigError, "intents directory not found"),
    ],
)
def test_handler_refuses_bad_arguments_before_embedding(
    extra: tuple[str, ...], error: type[ModelTriageError], message: str
) -> None:
    with pytest.raises(error, match=message):
        run_eval_intents(_files(*extra), HashingEncoder())


def test_min_similarity_and_tuning_it_are_exclusive(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        _files("--floor", "0.4", "--tune-floor")
    assert info.value.code == 2
    assert "not allowed with argument" in capsys.readouterr().err


def test_new_flag_names_and_their_former_spellings_parse_alike() -> None:
    for argv in (("--min-similarity", "0.4"), ("--floor", "0.4")):
        args = _files(*argv)
        assert (args.min_similarity, args.tune_min_similarity) == (0.4, False)
    for flag in ("--tune-min-similarity", "--tune-floor"):
        args = _files(flag)
        assert (args.min_similarity, args.tune_min_similarity) == (None, True)


def test_help_names_both_spellings(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        _args("--help")
    out = " ".join(capsys.readouterr().out.split())
    for flag in ("--min-similarity S, --floor S", "--tune-min-similarity, --tune-floor"):
        assert flag in out


def test_the_json_report_keeps_its_published_keys(
    shipped_config: RouterConfig, train_rows: list[LabelledText], test_rows: list[LabelledText]
) -> None:
    tuned = evaluate_intents(train_rows, test_rows, shipped_config, HashingEncoder(), TUNED)
    data = tuned.as_dict()
    assert data["floor"] == tuned.min_similarity and data["floor_source"] == "tuned"
    assert data["floor_tuning"]["floor"] == tuned.min_similarity
    assert data["floor_tuning"]["held_out_rows"] == 60
    assert not any("min_similarity" in key for key in data)
    untuned = evaluate_intents(train_rows, test_rows, shipped_config, HashingEncoder(), QUIET)
    assert untuned.as_dict()["floor_tuning"] is None


# --------------------------------------------------------------------------- input checks


def test_check_options_refuses_out_of_range_values(tmp_path: Path) -> None:
    def run(**options: object) -> IntentEvalRun:
        return IntentEvalRun(TRAIN, TEST, SHIPPED_INTENTS, EvalOptions(**options))  # type: ignore[arg-type]

    check_options(run())
    for options, message in (
        ({"per_intent": 0}, "--per-intent must be at least 1"),
        ({"top_k": 1001}, "--top-k must be between 1 and 1000"),
        ({"min_similarity": -1.5}, "--floor is a cosine similarity"),
    ):
        with pytest.raises(InputError, match=message):
            check_options(run(**options))
    missing = IntentEvalRun(TRAIN, TEST, SHIPPED_INTENTS, json_path=tmp_path / "no" / "r.json")
    with pytest.raises(InputError, match="does not exist"):
        check_options(missing)


def test_load_config_dir(tmp_path: Path) -> None:
    assert load_config_dir(SHIPPED_INTENTS).flagship_tier
    with pytest.raises(ConfigError, match="intents directory not found"):
        load_config_dir(tmp_path / "missing")


@pytest.mark.parametrize(
    ("name", "valid"), [("a", True), ("book_flight-2.x", True), ("has space", False), (" a", False)]
)
def test_is_intent_name_follows_the_schema(name: str, valid: bool) -> None:
    assert is_intent_name(name) is valid


def test_check_training_and_test_name_the_line(tmp_path: Path) -> None:
    path = _write(tmp_path / "t.jsonl", [ROW_A, "", ROW_OOS, '{"text": "z", "intent": "b c"}'])
    rows = read_intents_jsonl(path)
    check_training(path, rows, tune=False)  # 'b c' is renamed later, not refused
    check_training(path, rows[:2], tune=True)
    with pytest.raises(ConfigError, match="needs out-of-scope rows"):
        check_training(path, rows[:1], tune=True)
    with pytest.raises(ConfigError, match="no in-scope rows"):
        check_training(path, rows[1:2], tune=False)
    check_test(path, rows[:3], {"a", "b c"})
    with pytest.raises(ConfigError, match=r"t\.jsonl:4: intent 'b c' has no training rows"):
        check_test(path, rows, {"a"})
    with pytest.raises(ConfigError, match="no rows to evaluate"):
        check_test(path, [], {"a"})


def test_check_routable_names_the_line(tmp_path: Path, config: RouterConfig) -> None:
    path = _write(
        tmp_path / "t.jsonl", [ROW_A, "", json.dumps({"text": "y" * 40_000, "intent": "a"})]
    )
    rows = read_intents_jsonl(path)
    check_routable(path, rows[:1], config)
    with pytest.raises(ConfigError, match=r"t\.jsonl:3: text is 40000 bytes"):
        check_routable(path, rows, config)


def test_run_intent_eval_writes_the_report(tmp_path: Path) -> None:
    out = tmp_path / "r.json"
    run = IntentEvalRun(TRAIN, TEST, SHIPPED_INTENTS, EvalOptions(progress=False), out)
    report = run_intent_eval(run, HashingEncoder())
    written = json.loads(out.read_text(encoding="utf-8"))
    assert written["test_file"] == str(TEST) and written["exemplars"] == report.exemplars
    assert written["floor_source"] == "config"


def test_labels_that_are_not_intent_names_are_renamed_and_reported(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rows = [
        '{"text": "my card payment was reverted", "intent": "reverted_card_payment?"}',
        '{"text": "a payment came back to my card", "intent": "reverted_card_payment?"}',
        '{"text": "top up with a card", "intent": "top up"}',
        '{"text": "add money by card", "intent": "top up"}',
        '{"text": "add money by bank", "intent": "top_up"}',
    ]
    train = _write(tmp_path / "train.jsonl", rows)
    test = _write(tmp_path / "test.jsonl", [*rows, ROW_OOS])
    out = tmp_path / "r.json"
    assert (
        run_eval_intents(_files("--json", str(out), train=train, test=test), HashingEncoder()) == 0
    )
    assert (
        "labels renamed to intent names: 'reverted_card_payment?' as "
        "reverted_card_payment, 'top up' as top_up-2" in capsys.readouterr().out
    )
    report = json.loads(out.read_text(encoding="utf-8"))
    assert report["renamed_labels"] == {
        "reverted_card_payment": "reverted_card_payment?",
        "top_up-2": "top up",
    }
    assert {i["intent"] for i in report["router"]["scores"]["per_intent"]} == {
        "reverted_card_payment",
        "top_up",
        "top_up-2",
    }


@pytest.mark.parametrize(
    ("label", "name"),
    [
        ("reverted_card_payment?", "reverted_card_payment"),
        ("a b", "a_b"),
        ("_x", "x"),
        ("???", "intent"),
    ],
)
def test_intent_name_for_a_label(label: str, name: str) -> None:
    assert intent_name_for(label) == name and is_intent_name(name)


def test_run_intent_eval_reports_an_unwritable_json(tmp_path: Path) -> None:
    (tmp_path / "r.json").mkdir()  # a directory where the file should go
    run = IntentEvalRun(
        TRAIN, TEST, SHIPPED_INTENTS, EvalOptions(progress=False), tmp_path / "r.json"
    )
    with pytest.raises(EvaluationError, match="cannot write the report"):
        run_intent_eval(run, HashingEncoder())


def test_eval_needs_a_kind(capsys: pytest.CaptureFixture[str]) -> None:
    parser = argparse.ArgumentParser(prog="modeltriage")
    add_eval_parser(parser.add_subparsers(dest="command", required=True))
    with pytest.raises(SystemExit):
        parser.parse_args(["eval"])


def test_importing_the_eval_modules_does_not_import_torch() -> None:
    code = (
        "import sys, modeltriage.cli.eval, modeltriage.learn.evaluation; "
        "sys.exit('torch' in sys.modules or 'sentence_transformers' in sys.modules)"
    )
    assert subprocess.run([sys.executable, "-c", code], check=False).returncode == 0


# --------------------------------------------------------------------------- real encoder


@pytest.mark.real
def test_clinc_slice_through_the_real_encoder(
    real_encoder: SentenceTransformerEncoder,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The handler's default encoder, without loading the model a second time.
    monkeypatch.setattr(
        "modeltriage.core.encoders.SentenceTransformerEncoder", lambda **_: real_encoder
    )
    out = tmp_path / "report.json"
    assert run_eval(_files("--tune-floor", "--json", str(out))) == 0
    table = capsys.readouterr().out
    assert "floor 0." in table and "tuned on 60 held-out training rows" in table
    report = json.loads(out.read_text(encoding="utf-8"))
    router, top1 = report["router"]["scores"], report["top1"]["scores"]
    # The adapter (on by default) raises every similarity, and the floor with them.
    assert report["floor_source"] == "tuned" and 0.3 <= report["floor"] <= 0.9
    # 20 well-separated intents with 10 exemplars each: a real encoder gets most right
    # (measured: 80% in scope, 90% of out-of-scope rows caught, at min_similarity 0.46).
    assert router["in_scope_accuracy"] >= 0.7 and router["overall_accuracy"] >= 0.7
    assert top1["in_scope_accuracy"] >= 0.7
    assert router["oos_recall"] >= 0.5
    assert report["router"]["cost"]["savings"] > 0.3


def test_eval_is_registered_in_the_main_cli(capsys: pytest.CaptureFixture[str]) -> None:
    from modeltriage.cli.main import main

    with pytest.raises(SystemExit) as info:
        main(["eval", "--help"])
    assert info.value.code == 0
    out = capsys.readouterr().out
    assert "intents" in out and "outcomes" in out
